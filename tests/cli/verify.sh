#!/bin/sh
# tests/cli/verify.sh: `dsq verify` as a CI gate: a Q4_K_M GGUF of the tiny
# llama passes sensible thresholds against its safetensors reference with the
# exact KLD, a copy with one tensor's bytes zeroed fails (exit 1, the crossed
# thresholds named); no threshold is a usage error unless --report-only, which
# never says PASS, also for a different model (the tiny llama against the
# tiny DeepSeek); --save-kld-base (llama.cpp's file) / --save-ref (top-K) and
# --load-ref give the same verdicts, the same perplexities, the exact KLD
# (llama.cpp's file) or a lower bound said to be one (top-K); a corrupt
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

# pass: Q4_K_M against its source (measured: ratio ~1.001, KLD ~1e-3, top-1 ~96%)
expect_rc 0 "verify q4 passes" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH --json-out "$tmp/pass.json" --save-ref "$tmp/ref.bin" \
    --save-kld-base "$tmp/base.kld"
cp "$tmp/out" "$tmp/pass.out"
grep -q "^PASS" "$tmp/out" || fail "no PASS line: $(cat "$tmp/out")"
grep -q "(exact: 1024 tokens)" "$tmp/out" || fail "the live KLD is not said exact: $(cat "$tmp/out")"
for k in '"pass": true' '"verdict": "pass"' '"failed": \[\]' '"ppl_ratio": ' '"top1": ' \
    '"mean": ' '"p99": ' '"exact": true' '"n_vocab": 1024' '"top_k": null' '"reference": "live"' \
    '"ref": {' '"model": {' '"ppl": '; do
    grep -q "$k" "$tmp/pass.json" || fail "--json lacks $k: $(cat "$tmp/pass.json")"
done
# the top-K file stays small: 4 x 127 positions x 272 bytes + 72
size=$(wc -c <"$tmp/ref.bin")
[ "$size" -eq $((4 * 127 * 272 + 72)) ] || fail "reference file is $size bytes"
# llama.cpp's file: header, 4 x 256 tokens, 4 x 127 records of 1024 + 4 uint16
size=$(wc -c <"$tmp/base.kld")
[ "$size" -eq $((20 + 4 * 4 * 256 + 4 * 127 * 1028 * 2)) ] || fail "llama.cpp file is $size bytes"
[ "$(head -c 8 "$tmp/base.kld")" = "_logits_" ] || fail "llama.cpp file magic"

# no threshold: a usage error naming the way out; --report-only never says PASS
expect_rc 2 "no threshold" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" $W
grep -q -- "--report-only" "$tmp/err" || fail "no-threshold message: $(cat "$tmp/err")"
one_line_err "no threshold"
expect_rc 2 "report-only with a threshold" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --tokens "$tm/eval.tokens.txt" $W --report-only --max-kld 1
# another model altogether: the tiny llama against the tiny DeepSeek (same vocabulary)
expect_rc 2 "other model, no threshold" "$dsq" verify --ref "$tm/tiny-deepseek-v3" \
    --model "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" $W
expect_rc 0 "other model, report only" "$dsq" verify --ref "$tm/tiny-deepseek-v3" \
    --model "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" $W --report-only --json
grep -q '"verdict": "report-only"' "$tmp/out" || fail "report-only verdict: $(cat "$tmp/out")"
grep -q '"pass": null' "$tmp/out" || fail "report-only pass is not null: $(cat "$tmp/out")"
grep -q "^REPORT ONLY$" "$tmp/err" || fail "no REPORT ONLY line: $(cat "$tmp/err")"
grep -q "PASS" "$tmp/err" "$tmp/out" && fail "report-only says PASS: $(cat "$tmp/err")"
expect_rc 1 "other model fails the q4 thresholds" "$dsq" verify --ref "$tm/tiny-deepseek-v3" \
    --model "$tm/tiny-llama" --tokens "$tm/eval.tokens.txt" $W $TH
grep -q "^FAIL" "$tmp/out" || fail "other model: no FAIL line"
for c in max-ppl-ratio max-kld min-top1; do
    grep -q "$c" "$tmp/err" || fail "other model: $c not named: $(cat "$tmp/err")"
done

# --stream-layers: the same output, every digit
expect_rc 0 "verify q4 streamed" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH --stream-layers
cmp -s "$tmp/out" "$tmp/pass.out" || fail "--stream-layers output differs: $(cat "$tmp/out")"
expect_rc 0 "verify q4 streamed in passes" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt" $W $TH --stream-windows 3
cmp -s "$tmp/out" "$tmp/pass.out" || fail "--stream-windows output differs: $(cat "$tmp/out")"
expect_rc 2 "verify --stream-windows 0" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --text "$tm/eval.txt" --stream-windows 0 $TH

# --ref-topk 64: 16 + 8·64 bytes a position, the live KLD still exact, and the
# file's KLD reported as a top-64 lower bound, with a warning for --max-kld
expect_rc 0 "verify ref-topk" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" $W $TH --ref-topk 64 --save-ref "$tmp/ref64.bin"
cmp -s "$tmp/out" "$tmp/pass.out" || fail "--save-ref changed the live report: $(cat "$tmp/out")"
size=$(wc -c <"$tmp/ref64.bin")
[ "$size" -eq $((4 * 127 * 528 + 72)) ] || fail "top-64 reference file is $size bytes"
expect_rc 0 "load-ref top-64" "$dsq" verify --load-ref "$tmp/ref64.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" --threads 2 -q $TH --json
grep -q "(top-64 + rest: a lower bound)" "$tmp/err" || fail "top-64 not reported: $(cat "$tmp/err")"
grep -q "warning: .*lower bound" "$tmp/err" || fail "no lower-bound warning: $(cat "$tmp/err")"
grep -q '"exact": false' "$tmp/out" && grep -q '"top_k": 64' "$tmp/out" ||
    fail "top-64 json: $(cat "$tmp/out")"
expect_rc 2 "ref-topk with load-ref" "$dsq" verify --load-ref "$tmp/ref64.bin" \
    --model "$tmp/q4.gguf" --tokens "$tm/eval.tokens.txt" --ref-topk 8 $TH
expect_rc 2 "ref-topk without save-ref" "$dsq" verify --ref "$tm/tiny-llama" \
    --model "$tmp/q4.gguf" --tokens "$tm/eval.tokens.txt" --ref-topk 8 $TH
expect_rc 2 "ref-topk 0" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" --ref-topk 0 --save-ref "$tmp/r0.bin" $TH

# fail: the damaged copy crosses thresholds, named on stderr and in the JSON
expect_rc 1 "verify damaged fails" "$dsq" verify --ref "$tm/tiny-llama" --model "$tmp/bad.gguf" \
    --tokens "$tm/eval.tokens.txt" $W $TH --json-out "$tmp/fail.json"
cp "$tmp/out" "$tmp/fail.out"
grep -q "^FAIL" "$tmp/out" || fail "no FAIL line"
grep -q "max-kld" "$tmp/err" || fail "stderr does not name max-kld: $(cat "$tmp/err")"
one_line_err "threshold crossed"
grep -q '"pass": false' "$tmp/fail.json" || fail "json pass is not false"
grep -A3 '"failed"' "$tmp/fail.json" | grep -q '"max-kld"' || fail "json failed lacks max-kld"

# --load-ref of the top-K file: the same verdicts, the same perplexities and
# top-1, the KLD a lower bound
same_but_kld() { # a b: every line but the KLD line equal
    grep -v "^KLD" "$1" >"$tmp/a.cmp"
    grep -v "^KLD" "$2" >"$tmp/b.cmp"
    cmp -s "$tmp/a.cmp" "$tmp/b.cmp" || fail "reports differ: $(cat "$1" "$2")"
}
expect_rc 0 "load-ref q4" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --text "$tm/eval.txt" $W $TH
same_but_kld "$tmp/out" "$tmp/pass.out"
grep -q "(top-32 + rest: a lower bound)" "$tmp/out" || fail "top-32 not said: $(cat "$tmp/out")"
expect_rc 1 "load-ref damaged" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/bad.gguf" \
    --tokens "$tm/eval.tokens.txt" --threads 2 -q $TH
same_but_kld "$tmp/out" "$tmp/fail.out"

# --load-ref of llama.cpp's file: no text needed (the file has the tokens),
# the exact KLD, the model's perplexity to the digit
expect_rc 0 "load-ref llama.cpp file" "$dsq" verify --load-ref "$tmp/base.kld" \
    --model "$tmp/q4.gguf" --threads 2 -q $TH
grep -q "(exact: 1024 tokens, llama.cpp logits file)" "$tmp/out" || fail "$(cat "$tmp/out")"
grep "^model PPL" "$tmp/out" >"$tmp/a.cmp"
grep "^model PPL" "$tmp/pass.out" >"$tmp/b.cmp"
cmp -s "$tmp/a.cmp" "$tmp/b.cmp" || fail "model ppl from the llama.cpp file differs"
live=$(sed -n 's/^KLD mean = \([0-9.]*\).*/\1/p' "$tmp/pass.out")
file=$(sed -n 's/^KLD mean = \([0-9.]*\).*/\1/p' "$tmp/out")
awk -v a="$live" -v b="$file" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * a) }' ||
    fail "KLD from the llama.cpp file $file, live $live"
expect_rc 1 "load-ref llama.cpp file, damaged" "$dsq" verify --load-ref "$tmp/base.kld" \
    --model "$tmp/bad.gguf" --tokens "$tm/eval.tokens.txt" --threads 2 -q $TH
grep -q "max-kld" "$tmp/err" || fail "damaged vs llama.cpp file: $(cat "$tmp/err")"
tail -n +2 "$tm/eval.tokens.txt" >"$tmp/shift.txt"
expect_rc 3 "llama.cpp file, other tokens" "$dsq" verify --load-ref "$tmp/base.kld" \
    --model "$tmp/q4.gguf" --tokens "$tmp/shift.txt" -q $TH
grep -q "base.kld" "$tmp/err" || fail "token mismatch not named: $(cat "$tmp/err")"
head -c 100000 "$tmp/base.kld" >"$tmp/short.kld"
expect_rc 3 "truncated llama.cpp file" "$dsq" verify --load-ref "$tmp/short.kld" \
    --model "$tmp/q4.gguf" -q $TH
grep -q "short.kld.*truncated" "$tmp/err" || fail "truncated llama.cpp file: $(cat "$tmp/err")"
expect_rc 2 "llama.cpp file with other ctx" "$dsq" verify --load-ref "$tmp/base.kld" \
    --model "$tmp/q4.gguf" --ctx 128 -q $TH

# corrupt, truncated and foreign reference files: exit 3, one line naming the file
cp "$tmp/ref.bin" "$tmp/flip.bin"
printf 'X' | dd of="$tmp/flip.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_rc 3 "corrupt ref" "$dsq" verify --load-ref "$tmp/flip.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q $TH
grep -q "flip.bin.*checksum" "$tmp/err" || fail "corrupt ref message: $(cat "$tmp/err")"
one_line_err "corrupt ref"
head -c 10000 "$tmp/ref.bin" >"$tmp/short.bin"
expect_rc 3 "truncated ref" "$dsq" verify --load-ref "$tmp/short.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q $TH
grep -q "short.bin.*truncated" "$tmp/err" || fail "truncated ref message: $(cat "$tmp/err")"
expect_rc 3 "foreign ref" "$dsq" verify --load-ref "$tm/eval.txt" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q $TH
grep -q "not a dsq reference file" "$tmp/err" || fail "foreign ref message"
expect_rc 3 "missing ref" "$dsq" verify --load-ref "$tmp/nope.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" -q $TH
grep -q "nope.bin" "$tmp/err" || fail "missing ref not named"
# a reference made on other tokens is refused (exit 3), another --ctx is a usage error
expect_rc 3 "ref of other tokens" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --tokens "$tmp/shift.txt" -q $TH
grep -q "windows" "$tmp/err" || fail "token mismatch message: $(cat "$tmp/err")"
expect_rc 2 "ref with other ctx" "$dsq" verify --load-ref "$tmp/ref.bin" --model "$tmp/q4.gguf" \
    --tokens "$tm/eval.tokens.txt" --ctx 128 -q $TH

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
    --tokens "$tm/eval.tokens.txt" --ctx 64 --chunks 1 -q $TH
grep -q "nomodel" "$tmp/err" || fail "missing model not named"

# DeepSeek (MLA, MoE): its Q4_K_M GGUF passes too
"$dsq" quantize "$tm/tiny-deepseek-v3" "$tmp/ds.gguf" --type Q4_K_M >/dev/null 2>&1 ||
    fail "quantize deepseek"
expect_rc 0 "verify deepseek q4" "$dsq" verify --ref "$tm/tiny-deepseek-v3" \
    --model "$tmp/ds.gguf" --tokens "$tm/eval.tokens.txt" --ctx 128 --chunks 2 -q $TH
echo "verify.sh: ok"
