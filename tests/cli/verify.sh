#!/bin/sh
# tests/cli/verify.sh: `dsq verify` as a CI gate: a Q4_K_M GGUF of the tiny
# llama passes sensible thresholds against its safetensors reference, a copy
# with one tensor's bytes zeroed fails (exit 1, the crossed thresholds named),
# --save-ref / --load-ref give the same verdict and the same numbers, a corrupt
# reference file is a clear error, and usage errors exit 2.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
tm="$shared/data/tiny-models"
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fail() { echo "verify.sh: $*" >&2; exit 1; }

expect_rc() { # expected_rc description command...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] || fail "$what: exit $rc, expected $want; stderr: $(cat "$tmp/err")"
}
one_line_err() {
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: error is not one line: $(cat "$tmp/err")"
}

expect_rc 0 "verify --help" "$dsq" verify --help
grep -q "usage: dsq verify --ref REF --model CAND" "$tmp/out" || fail "verify --help text"
expect_rc 0 "dsq --help" "$dsq" --help
grep -q "verify" "$tmp/out" || fail "dsq --help does not list verify"

"$dsq" quantize "$tm/tiny-llama" "$tmp/q4.gguf" --type Q4_K_M >/dev/null 2>&1 ||
    fail "quantize Q4_K_M"
# the damaged copy: blk.1.ffn_down.weight's bytes zeroed (all its Q4_K scales 0)
cp "$tmp/q4.gguf" "$tmp/bad.gguf"
"$dsq" inspect "$tmp/q4.gguf" >"$tmp/inspect.txt" || fail "inspect"
data=$(sed -n 's/.*data section at byte \([0-9]*\).*/\1/p' "$tmp/inspect.txt")
set -- $(grep '^blk.1.ffn_down.weight ' "$tmp/inspect.txt")
off=$(($data + ${6}))
bytes=${5}
[ "$bytes" -gt 0 ] || fail "no tensor size from inspect"
dd if=/dev/zero of="$tmp/bad.gguf" bs=1 seek="$off" count="$bytes" conv=notrunc 2>/dev/null ||
    fail "dd"
cmp -s "$tmp/q4.gguf" "$tmp/bad.gguf" && fail "the damaged copy is not damaged"

TH="--max-ppl-ratio 1.02 --max-kld 0.01 --min-top1 0.9"
W="--ctx 256 --chunks 4 --threads 2 -q"

# pass: Q4_K_M against its source (measured: ratio ~1.001, KLD ~8e-4, top-1 ~96%)
expect_rc 0 "verify q4 passes" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH --json-out "$tmp/pass.json" --save-ref "$tmp/ref.bin"
cp "$tmp/out" "$tmp/pass.out"
grep -q "^PASS" "$tmp/out" || fail "no PASS line: $(cat "$tmp/out")"
for k in '"pass": true' '"failed": \[\]' '"ppl_ratio": ' '"top1": ' '"mean": ' '"p99": ' \
    '"ref": {' '"model": {' '"ppl": '; do
    grep -q "$k" "$tmp/pass.json" || fail "--json lacks $k: $(cat "$tmp/pass.json")"
done
# the reference file stays small: 4 x 127 positions x 272 bytes + 72
size=$(wc -c <"$tmp/ref.bin")
[ "$size" -eq $((4 * 127 * 272 + 72)) ] || fail "reference file is $size bytes"

# --stream-layers: the same output, every digit
expect_rc 0 "verify q4 streamed" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH --stream-layers
cmp -s "$tmp/out" "$tmp/pass.out" || fail "--stream-layers output differs: $(cat "$tmp/out")"
expect_rc 0 "verify q4 streamed in passes" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt" $W $TH --stream-windows 3
cmp -s "$tmp/out" "$tmp/pass.out" || fail "--stream-windows output differs: $(cat "$tmp/out")"
expect_rc 2 "verify --stream-windows 0" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt" --stream-windows 0

# --ref-topk 64: 16 + 8·64 bytes a position, and the report says top-64
expect_rc 0 "verify ref-topk" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" $W $TH --ref-topk 64 --save-ref "$tmp/ref64.bin"
grep -q "(top-64 + rest)" "$tmp/out" || fail "top-64 not reported: $(cat "$tmp/out")"
size=$(wc -c <"$tmp/ref64.bin")
[ "$size" -eq $((4 * 127 * 528 + 72)) ] || fail "top-64 reference file is $size bytes"
expect_rc 2 "ref-topk with load-ref" "$dsq" verify --load-ref "$tmp/ref64.bin" \
    --model "$tmp/q4.gguf" --tokens "$tm/eval.tokens.txt" --ref-topk 8
expect_rc 2 "ref-topk 0" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" --ref-topk 0

# fail: the damaged copy crosses thresholds, named on stderr and in the JSON
expect_rc 1 "verify damaged fails" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/bad.gguf" \
    --tokens "$tm/eval.tokens.txt" $W $TH --json-out "$tmp/fail.json"
cp "$tmp/out" "$tmp/fail.out"
grep -q "^FAIL" "$tmp/out" || fail "no FAIL line"
grep -q "max-kld" "$tmp/err" || fail "stderr does not name max-kld: $(cat "$tmp/err")"
one_line_err "threshold crossed"
grep -q '"pass": false' "$tmp/fail.json" || fail "json pass is not false"
grep -A3 '"failed"' "$tmp/fail.json" | grep -q '"max-kld"' || fail "json failed lacks max-kld"

# --load-ref: the same verdicts and the same numbers, without the reference model
expect_rc 0 "load-ref q4" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH
cmp -s "$tmp/out" "$tmp/pass.out" || fail "load-ref output differs: $(cat "$tmp/out" "$tmp/pass.out")"
expect_rc 1 "load-ref damaged" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/bad.gguf" \
    --tokens "$tm/eval.tokens.txt" --threads 2 -q $TH
cmp -s "$tmp/out" "$tmp/fail.out" || fail "load-ref damaged output differs"

# corrupt, truncated and foreign reference files: exit 3, one line naming the file
cp "$tmp/ref.bin" "$tmp/flip.bin"
printf 'X' | dd of="$tmp/flip.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_rc 3 "corrupt ref" "$dsq" verify --load-ref "$tmp/flip.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q
grep -q "flip.bin.*checksum" "$tmp/err" || fail "corrupt ref message: $(cat "$tmp/err")"
one_line_err "corrupt ref"
head -c 10000 "$tmp/ref.bin" >"$tmp/short.bin"
expect_rc 3 "truncated ref" "$dsq" verify --load-ref "$tmp/short.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q
grep -q "short.bin.*truncated" "$tmp/err" || fail "truncated ref message: $(cat "$tmp/err")"
expect_rc 3 "foreign ref" "$dsq" verify --load-ref "$tm/eval.txt" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q
grep -q "not a dsq reference file" "$tmp/err" || fail "foreign ref message"
expect_rc 3 "missing ref" "$dsq" verify --load-ref "$tmp/nope.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q
grep -q "nope.bin" "$tmp/err" || fail "missing ref not named"
# a reference made on other tokens is refused (exit 3), another --ctx is a usage error
tail -n +2 "$tm/eval.tokens.txt" >"$tmp/shift.txt"
expect_rc 3 "ref of other tokens" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --tokens "$tmp/shift.txt" -q
grep -q "windows" "$tmp/err" || fail "token mismatch message: $(cat "$tmp/err")"
expect_rc 2 "ref with other ctx" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" --ctx 128 -q

# usage: exit 2
expect_rc 2 "no args" "$dsq" verify
expect_rc 2 "no model" "$dsq" verify --ref "$tm/tiny-llama" --text "$tm/eval.txt"
expect_rc 2 "ref and load-ref" "$dsq" verify --ref "$tm/tiny-llama" --load-ref x \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt"
expect_rc 2 "save-ref without ref" "$dsq" verify --load-ref x --save-ref y \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt"
expect_rc 2 "text and tokens" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" --tokens "$tm/eval.tokens.txt"
expect_rc 2 "min-top1 > 1" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" --min-top1 90
expect_rc 2 "bad max-kld" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" --max-kld abc
expect_rc 2 "unknown option" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" --bogus
# bad input: exit 3
expect_rc 3 "missing model" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/nomodel" \
    --tokens "$tm/eval.tokens.txt" --ctx 64 --chunks 1 -q
grep -q "nomodel" "$tmp/err" || fail "missing model not named"

# DeepSeek (MLA, MoE): its Q4_K_M GGUF passes too
"$dsq" quantize "$tm/tiny-deepseek-v3" "$tmp/ds.gguf" --type Q4_K_M >/dev/null 2>&1 ||
    fail "quantize deepseek"
expect_rc 0 "verify deepseek q4" "$dsq" verify --ref "$tm/tiny-deepseek-v3" \
    --model "$tmp/ds.gguf" --tokens "$tm/eval.tokens.txt" --ctx 128 --chunks 2 -q $TH
echo "verify.sh: ok"
