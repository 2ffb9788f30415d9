#!/bin/sh
# tests/cli/cli_basics.sh: what a user of the command line sees: --help on every
# command (ending with examples; `dsq help CMD` the same), exit codes (0 ok, 2 usage,
# 3 bad input, 4 I/O), one-line errors with the command's prefix that name the file as
# given, usage errors of one line pointing at --help, --json whose stdout is the
# document alone (tests/test_cli_json.c parses it), --dry-run writing nothing, summaries
# that say what happened.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
fp8="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_basics: $*" >&2; exit 1; }

expect_rc() { # expected_rc description command...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] || fail "$what: exit $rc, expected $want; stderr: $(cat "$tmp/err")"
}

one_line() { [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: not one line: $(cat "$tmp/err")"; }

expect_rc 0 "dsq --help" "$dsq" --help
grep -q "convert" "$tmp/out" || fail "dsq --help does not list convert"
grep -q -- "-V, --version" "$tmp/out" || fail "dsq --help does not list -V/--version"
expect_rc 0 "dsq -V" "$dsq" -V
grep -q "^dsq [0-9]" "$tmp/out" || fail "dsq -V: $(cat "$tmp/out")"
expect_rc 0 "convert --help" "$dsq" convert --help
grep -q "usage: dsq convert fp8 bf16" "$tmp/out" || fail "convert --help text"
grep -q "cores but one" "$tmp/out" || fail "convert --help: the --threads default"
# every help ends with an examples block of two or three lines, and `dsq help CMD` is it
for c in convert inspect quantize ppl verify; do
    expect_rc 0 "$c --help" "$dsq" $c --help
    cp "$tmp/out" "$tmp/help1"
    n=$(sed -n '/^examples:$/,$p' "$tmp/help1" | grep -c "^  dsq $c ")
    [ "$n" -ge 2 ] && [ "$n" -le 3 ] || fail "$c --help: $n examples"
    tail -n 1 "$tmp/help1" | grep -q "^  dsq $c " || fail "$c --help does not end with examples"
    expect_rc 0 "dsq help $c" "$dsq" help $c
    cmp -s "$tmp/out" "$tmp/help1" || fail "dsq help $c differs from dsq $c --help"
done
grep -q "GGUF" "$tmp/help1" || fail "verify --help does not say models may be GGUF"
expect_rc 0 "inspect --help" "$dsq" inspect --help
grep -q "GGUF" "$tmp/out" || fail "inspect --help does not say it takes a GGUF"
expect_rc 2 "no command" "$dsq"
expect_rc 2 "unknown command" "$dsq" frobnicate
grep -qx "dsq: unknown command 'frobnicate'; see 'dsq --help'" "$tmp/err" ||
    fail "unknown command: $(cat "$tmp/err")"
expect_rc 2 "dsq help unknown" "$dsq" help frobnicate
# a usage error is one line that points at --help, never the whole help
for args in "convert" "convert fp8 bf16 a b --bogus" "convert fp8 bf16 a b --threads 0" \
    "convert fp16 int4 a b" "inspect" "inspect a b" "quantize a" "quantize a b.gguf" \
    "quantize a b.gguf --type Q8_0 --threads x" "ppl" "verify --model m"; do
    set -- $args
    expect_rc 2 "$args" "$dsq" "$@"
    one_line "$args"
    grep -q "^dsq $1: .*; see 'dsq $1 --help'$" "$tmp/err" || fail "$args: $(cat "$tmp/err")"
done
expect_rc 2 "convert bad threads" "$dsq" convert fp8 bf16 a b --threads 0
grep -q "^dsq convert: --threads: expected a whole number from 1 to 4096, got '0'" "$tmp/err" ||
    fail "bad --threads: $(cat "$tmp/err")"
# a missing input is named as given, with one wording, by every command
case $dsq in /*) abs=$dsq ;; *) abs=$PWD/$dsq ;; esac
here=$PWD
cd "$tmp" || fail "cd"
for args in "convert fp8 bf16 nosuch out1" "inspect nosuch" "quantize nosuch x.gguf --type Q8_0" \
    "ppl nosuch --tokens nosuch" "verify --ref nosuch --model m --tokens t"; do
    set -- $args
    expect_rc 3 "$args" "$abs" "$@"
    grep -qx "dsq $1: nosuch: no such file or directory" "$tmp/err" || fail "$args: $(cat "$tmp/err")"
done
expect_rc 3 "inspect /nonexistent" "$abs" inspect /nonexistent
grep -qx "dsq inspect: /nonexistent: no such file or directory" "$tmp/err" ||
    fail "inspect /nonexistent: $(cat "$tmp/err")"
cd "$here" || fail "cd back"
expect_rc 3 "convert missing input" "$dsq" convert fp8 bf16 "$tmp/nope" "$tmp/out1"
grep -q "nope" "$tmp/err" || fail "error does not name the missing directory"
one_line "convert missing input"
expect_rc 3 "inspect missing file" "$dsq" inspect "$tmp/nope.safetensors"

# a corrupt shard: a one-line error naming the file, exit 3, nothing written
mkdir "$tmp/bad"
cp "$fp8"/* "$tmp/bad/"
chmod u+w "$tmp/bad"/*
head -c 1000 "$fp8/model-00002-of-00002.safetensors" >"$tmp/bad/model-00002-of-00002.safetensors"
expect_rc 3 "convert corrupt shard" "$dsq" convert fp8 bf16 "$tmp/bad" "$tmp/out2"
grep -q "^dsq convert: .*model-00002-of-00002.safetensors" "$tmp/err" ||
    fail "error does not name the shard: $(cat "$tmp/err")"
[ ! -e "$tmp/out2" ] || fail "output directory created for a corrupt input"

# dry run: the plan on stdout, nothing on disk
expect_rc 0 "dry run" "$dsq" convert fp8 bf16 "$fp8" "$tmp/out3" --dry-run
grep -q "model-00001-of-00002.safetensors" "$tmp/out" || fail "dry run does not list shards"
[ ! -e "$tmp/out3" ] || fail "dry run wrote something"

# the real thing, with --json
expect_rc 0 "convert --json" "$dsq" convert fp8 bf16 "$fp8" "$tmp/out4" --json
grep -q '"tensors_converted": 104' "$tmp/out" || fail "convert --json: $(cat "$tmp/out")"
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "convert --json: more than the document on stdout"
grep -q "^converted 104 FP8 tensors to BF16, .*wrote 2 shards" "$tmp/err" ||
    fail "convert --json: the summary is not on stderr: $(cat "$tmp/err")"
# --resume with nothing to do says so
expect_rc 0 "convert --resume, all intact" "$dsq" convert fp8 bf16 "$fp8" "$tmp/out4" --resume
grep -q "^all 2 shards already intact, no shard written (--resume)" "$tmp/out" ||
    fail "resume summary: $(cat "$tmp/out")"
[ -f "$tmp/out4/config.json" ] || fail "no config.json"
if grep -q quantization_config "$tmp/out4/config.json"; then fail "quantization_config kept"; fi

expect_rc 0 "inspect dir" "$dsq" inspect "$tmp/out4"
grep -q "^BF16 " "$tmp/out" || fail "inspect totals: $(tail -n 4 "$tmp/out")"
if grep -q "F8_E4M3" "$tmp/out"; then fail "FP8 tensor left in the output"; fi
expect_rc 0 "inspect --json" "$dsq" inspect "$tmp/out4/model-00001-of-00002.safetensors" --json
grep -q '"format": "pt"' "$tmp/out" || fail "inspect --json lacks the shard metadata"
grep -q '"tensor_count"' "$tmp/out" || fail "inspect --json lacks tensor_count"

# outputs that cannot work are refused before any weight is read: one line, exit 2 (a
# directory where a file goes) or 4 (no parent directory), nothing on stdout, nothing left
llama="$shared/data/tiny-models/tiny-llama"
toks="$shared/data/tiny-models/eval.tokens.txt"
mkdir "$tmp/outdir"
refuse() { # rc what command...
    want=$1; what=$2; shift 2
    expect_rc "$want" "$what" "$@"
    one_line "$what"
    [ ! -s "$tmp/out" ] || fail "$what: work was done: $(cat "$tmp/out")"
}
refuse 2 "quantize to a directory" "$dsq" quantize "$llama" "$tmp/outdir" --type Q8_0
grep -qx "dsq quantize: $tmp/outdir: is a directory" "$tmp/err" || fail "$(cat "$tmp/err")"
[ -z "$(ls -A "$tmp/outdir")" ] || fail "quantize left something in $tmp/outdir"
refuse 4 "quantize, no parent" "$dsq" quantize "$llama" "$tmp/no/x.gguf" --type Q8_0
grep -q "^dsq quantize: $tmp/no/x.gguf: " "$tmp/err" || fail "$(cat "$tmp/err")"
refuse 4 "ppl --json-out, no parent" "$dsq" ppl "$llama" --tokens "$toks" \
    --json-out "$tmp/missing/dir/x.json"
grep -q "^dsq ppl: $tmp/missing/dir/x.json: " "$tmp/err" || fail "$(cat "$tmp/err")"
refuse 4 "verify --json-out, no parent" "$dsq" verify --ref "$llama" --model "$llama" \
    --tokens "$toks" --report-only --json-out "$tmp/missing/v.json"
refuse 4 "verify --save-ref, no parent" "$dsq" verify --ref "$llama" --model "$llama" \
    --tokens "$toks" --report-only --save-ref "$tmp/missing/ref.bin"
grep -q "^dsq verify: $tmp/missing/ref.bin: " "$tmp/err" || fail "$(cat "$tmp/err")"
refuse 2 "verify --save-ref to a directory" "$dsq" verify --ref "$llama" --model "$llama" \
    --tokens "$toks" --report-only --save-ref "$tmp/outdir"

# an unwritable output directory is an I/O error (exit 4), not a crash
if [ "$(id -u)" -ne 0 ]; then
    mkdir "$tmp/ro" && chmod 500 "$tmp/ro"
    expect_rc 4 "unwritable output" "$dsq" convert fp8 bf16 "$fp8" "$tmp/ro/out"
fi
echo "cli_basics: ok"
