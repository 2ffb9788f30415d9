#!/bin/sh
# tests/cli/ppl.sh: `dsq ppl` as a user sees it: --help, the result line, the
# --json fields, the team's reference numbers on the first chunks, and exit
# codes (2 usage, 3 bad input, 4 I/O) with one-line errors.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
tm="$shared/data/tiny-models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "ppl.sh: $*" >&2; exit 1; }

expect_rc() { # expected_rc description command...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] || fail "$what: exit $rc, expected $want; stderr: $(cat "$tmp/err")"
}
one_line_err() {
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: error is not one line: $(cat "$tmp/err")"
}

expect_rc 0 "ppl --help" "$dsq" ppl --help
grep -q "usage: dsq ppl MODEL --tokens FILE" "$tmp/out" || fail "ppl --help text"
grep -q "GGUF" "$tmp/out" || fail "ppl --help does not say MODEL may be a GGUF"
tail -n 4 "$tmp/out" | grep -q "^  dsq ppl " || fail "ppl --help does not end with examples"
expect_rc 0 "dsq help ppl" "$dsq" help ppl
grep -q "usage: dsq ppl MODEL" "$tmp/out" || fail "dsq help ppl is not ppl's help"
expect_rc 0 "dsq --help" "$dsq" --help
grep -q "ppl" "$tmp/out" || fail "dsq --help does not list ppl"

# two chunks of 256 of the llama: the reference's first two per-chunk NLLs are
# 4.626348400785556 and 4.369537724728818 -> ppl = exp(4.49794306) = 89.8322
expect_rc 0 "ppl --json-out" "$dsq" ppl "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" --ctx 256 \
    --chunks 2 --threads 1 --json-out "$tmp/r.json" -q
grep -q "^PPL = 89.832" "$tmp/out" || fail "ppl result line: $(cat "$tmp/out")"
for k in '"ppl": 89.832' '"ppl_stderr": ' '"nll_mean": 4.49794' '"n_scored": 254' '"ctx": 256'; do
    grep -q "$k" "$tmp/r.json" || fail "--json lacks $k: $(cat "$tmp/r.json")"
done
# --text tokenizes eval.txt with the model's tokenizer.json (bos from
# tokenizer_config.json): the same tokens, so the same numbers to every digit
expect_rc 0 "ppl --text" "$dsq" ppl "$tm/tiny-llama" --text "$tm/eval.txt" --ctx 256 \
    --chunks 2 --threads 1 --json-out "$tmp/t.json" -q
grep -q "^PPL = 89.832" "$tmp/out" || fail "ppl --text result line: $(cat "$tmp/out")"
sed 's/"seconds".*//' "$tmp/r.json" >"$tmp/r.cut"
sed 's/"seconds".*//' "$tmp/t.json" >"$tmp/t.cut"
cmp -s "$tmp/r.cut" "$tmp/t.cut" || fail "--text and --tokens differ: $(cat "$tmp/r.json" "$tmp/t.json")"
expect_rc 2 "ppl --text and --tokens" "$dsq" ppl "$tm/tiny-llama" --text "$tm/eval.txt" \
    --tokens "$tm/eval.tokens.txt"
expect_rc 3 "ppl missing text file" "$dsq" ppl "$tm/tiny-llama" --text "$tmp/nope.txt" --ctx 64
grep -q "nope.txt" "$tmp/err" || fail "error does not name the missing text file"
one_line_err "missing text"
# a GGUF file (made here by dsq quantize): same numbers as the safetensors model,
# its tokenizer from the GGUF metadata
"$dsq" quantize "$tm/tiny-llama" "$tmp/l.gguf" --type F32 >/dev/null 2>&1 || fail "quantize F32"
expect_rc 0 "ppl gguf --text" "$dsq" ppl "$tmp/l.gguf" --text "$tm/eval.txt" --ctx 256 \
    --chunks 2 --threads 1 -q
grep -q "^PPL = 89.832" "$tmp/out" || fail "ppl gguf result line: $(cat "$tmp/out")"
head -c 3000 "$tmp/l.gguf" >"$tmp/trunc.gguf"
expect_rc 3 "ppl truncated gguf" "$dsq" ppl "$tmp/trunc.gguf" --tokens "$tm/eval.tokens.txt"
one_line_err "truncated gguf"
grep -q "trunc.gguf" "$tmp/err" || fail "error does not name the truncated gguf"
# --stream-layers: the same numbers, every printed digit
expect_rc 0 "ppl --stream-layers" "$dsq" ppl "$tm/tiny-deepseek-v3" --tokens "$tm/eval.tokens.txt" \
    --ctx 128 --chunks 3 -q
sed 's/;.*//' "$tmp/out" >"$tmp/whole.txt"
expect_rc 0 "ppl --stream-layers" "$dsq" ppl "$tm/tiny-deepseek-v3" --tokens "$tm/eval.tokens.txt" \
    --ctx 128 --chunks 3 -q --stream-layers
sed 's/;.*//' "$tmp/out" >"$tmp/streamed.txt"
cmp -s "$tmp/whole.txt" "$tmp/streamed.txt" ||
    fail "--stream-layers differs: $(cat "$tmp/whole.txt" "$tmp/streamed.txt")"
# in passes of 2 windows (2 + 1): the same digits again
expect_rc 0 "ppl --stream-windows 2" "$dsq" ppl "$tm/tiny-deepseek-v3" \
    --tokens "$tm/eval.tokens.txt" --ctx 128 --chunks 3 -q --stream-windows 2
sed 's/;.*//' "$tmp/out" >"$tmp/streamed2.txt"
cmp -s "$tmp/whole.txt" "$tmp/streamed2.txt" ||
    fail "--stream-windows 2 differs: $(cat "$tmp/whole.txt" "$tmp/streamed2.txt")"
expect_rc 2 "ppl --stream-windows 0" "$dsq" ppl "$tm/tiny-deepseek-v3" \
    --tokens "$tm/eval.tokens.txt" --stream-windows 0
# --json writes the document alone to stdout, the result line to stderr (with or without
# -q; tests/test_cli_json.c parses it); the FP8 model reads through its block scales
expect_rc 0 "ppl fp8 --json" "$dsq" ppl "$tm/tiny-deepseek-v3-fp8" \
    --tokens "$tm/eval.tokens.txt" --ctx 128 --chunks 1 --json
grep -q '"ctx": 128' "$tmp/out" || fail "--json output: $(cat "$tmp/out")"
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "--json: stdout holds more than the document"
grep -q "^PPL = " "$tmp/err" || fail "--json: the result line is not on stderr"
# the old form --json FILE is refused, naming --json-out
expect_rc 2 "ppl --json FILE" "$dsq" ppl "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" \
    --json "$tmp/old.json"
grep -q "use --json-out" "$tmp/err" || fail "--json FILE: $(cat "$tmp/err")"
one_line_err "--json FILE"

# a window longer than the model was trained for (the tiny llama's config.json and its GGUF
# say 1024) runs, with a warning
expect_rc 0 "ppl --ctx 2048" "$dsq" ppl "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" \
    --ctx 2048 --chunks 1 -q
grep -qx "dsq ppl: warning: --ctx 2048 is beyond the model's max_position_embeddings (1024): .*" \
    "$tmp/err" || fail "no --ctx warning: $(cat "$tmp/err")"
expect_rc 0 "ppl gguf --ctx 2048" "$dsq" ppl "$tmp/l.gguf" --tokens "$tm/eval.tokens.txt" \
    --ctx 2048 --chunks 1 -q
grep -q "max_position_embeddings (1024)" "$tmp/err" || fail "no --ctx warning (gguf)"
expect_rc 0 "ppl --ctx 1024" "$dsq" ppl "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" \
    --ctx 1024 --chunks 1 -q
[ ! -s "$tmp/err" ] || fail "--ctx 1024 warns: $(cat "$tmp/err")"

# usage errors: exit 2
expect_rc 2 "ppl without args" "$dsq" ppl
expect_rc 2 "ppl without --tokens" "$dsq" ppl "$tm/tiny-llama"
expect_rc 2 "ppl unknown option" "$dsq" ppl "$tm/tiny-llama" --tokens x --bogus
grep -q "^dsq ppl: unknown option '--bogus'; see 'dsq ppl --help'$" "$tmp/err" ||
    fail "usage error: $(cat "$tmp/err")"
one_line_err "unknown option"
expect_rc 2 "ppl bad ctx" "$dsq" ppl "$tm/tiny-llama" --tokens x --ctx 2
expect_rc 2 "ppl bad threads" "$dsq" ppl "$tm/tiny-llama" --tokens x --threads 0
expect_rc 2 "ppl ctx not a number" "$dsq" ppl "$tm/tiny-llama" --tokens x --ctx 12abc
expect_rc 2 "ppl two models" "$dsq" ppl a b --tokens x
# too few tokens for the context (llama.cpp needs 2·ctx): a usage error too
head -n 100 "$tm/eval.tokens.txt" >"$tmp/short.txt"
expect_rc 2 "ppl too few tokens" "$dsq" ppl "$tm/tiny-llama" --tokens "$tmp/short.txt" --ctx 64
one_line_err "too few tokens"

# bad input: exit 3, one line naming the file
expect_rc 3 "ppl missing tokens file" "$dsq" ppl "$tm/tiny-llama" --tokens "$tmp/nope.txt"
grep -qx "dsq ppl: $tmp/nope.txt: no such file or directory" "$tmp/err" ||
    fail "missing token file: $(cat "$tmp/err")"
one_line_err "missing tokens"
expect_rc 3 "ppl missing model" "$dsq" ppl "$tmp/nomodel" --tokens "$tm/eval.tokens.txt"
grep -q "nomodel" "$tmp/err" || fail "error does not name the missing model"
printf '0\n5\nhello\n' >"$tmp/bad.txt"
expect_rc 3 "ppl malformed tokens" "$dsq" ppl "$tm/tiny-llama" --tokens "$tmp/bad.txt"
grep -q "bad.txt:3" "$tmp/err" || fail "error does not name the line: $(cat "$tmp/err")"
awk '{print 5000}' "$tm/eval.tokens.txt" | head -n 600 >"$tmp/big.txt"
expect_rc 3 "ppl token outside vocabulary" "$dsq" ppl "$tm/tiny-llama" --tokens "$tmp/big.txt" \
    --ctx 256
one_line_err "token outside vocabulary"
# an unsupported architecture is named
mkdir "$tmp/qwen"
printf '{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}' >"$tmp/qwen/config.json"
expect_rc 3 "ppl unsupported arch" "$dsq" ppl "$tmp/qwen" --tokens "$tm/eval.tokens.txt"
grep -q "Qwen2ForCausalLM" "$tmp/err" || fail "unsupported architecture not named"
one_line_err "unsupported arch"
# a truncated shard
mkdir "$tmp/trunc"
cp "$tm/tiny-llama/config.json" "$tmp/trunc/"
head -c 5000 "$tm/tiny-llama/model.safetensors" >"$tmp/trunc/model.safetensors"
expect_rc 3 "ppl truncated model" "$dsq" ppl "$tmp/trunc" --tokens "$tm/eval.tokens.txt"
one_line_err "truncated model"

# an unwritable --json-out target is an I/O error (exit 4)
expect_rc 4 "ppl json unwritable" "$dsq" ppl "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" \
    --ctx 64 --chunks 1 --json-out "$tmp/no/such/dir/r.json" -q
echo "ppl.sh: ok"
