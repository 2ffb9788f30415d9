#!/bin/sh
# tests/cli/quantize_gguf.sh: the command line of `dsq quantize` on GGUF input with
# --imatrix and --split-max-size, and `dsq inspect` on its output: flags in --help, the
# JSON summary, exit codes (0 ok, 2 usage, 3 bad input) with nothing left behind.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
llama="$shared/data/tiny-models/tiny-llama"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "quantize_gguf: $*" >&2; exit 1; }

"$dsq" quantize --help >"$tmp/help" || fail "quantize --help"
for f in --imatrix --allow-requantize --split-max-size; do
    grep -q -- "$f" "$tmp/help" || fail "--help does not mention $f"
done

"$dsq" quantize "$llama" "$tmp/f32.gguf" --type F32 -q || fail "HF -> F32"
"$dsq" quantize "$tmp/f32.gguf" "$tmp/q.gguf" --type Q4_K_M --imatrix tests/data/tiny-llama.imatrix.dat \
    --split-max-size 1M --json >"$tmp/sum.json" 2>"$tmp/err" || fail "GGUF -> Q4_K_M split: $(cat "$tmp/err")"
grep -q '"splits": 3' "$tmp/sum.json" || fail "summary: $(cat "$tmp/sum.json")"
grep -q '"imatrix_tensors": 28' "$tmp/sum.json" || fail "summary: $(cat "$tmp/sum.json")"
# --json: the document alone on stdout; the summary and the notes (prefixed) on stderr
[ "$(wc -l <"$tmp/sum.json")" -eq 1 ] || fail "--json: more than the document on stdout"
grep -q '^quantized 39 tensors to Q4_K_M (llama) .*(3 split files)' "$tmp/err" ||
    fail "--json: no summary on stderr: $(cat "$tmp/err")"
grep -q '^dsq quantize: note: imatrix: no entry for output.weight' "$tmp/err" ||
    fail "--json: notes without the prefix: $(cat "$tmp/err")"
if grep -v '^dsq quantize: \|^quantized \|^imatrix used' "$tmp/err"; then
    fail "unprefixed lines on stderr"
fi
[ -f "$tmp/q-00001-of-00003.gguf" ] && [ -f "$tmp/q-00003-of-00003.gguf" ] || fail "split names: $(ls "$tmp")"
[ ! -e "$tmp/q.gguf" ] || fail "unsplit file written too"

# inspect: the first split has the metadata and the imatrix provenance
"$dsq" inspect "$tmp/q-00001-of-00003.gguf" >"$tmp/insp" || fail "inspect split"
grep -q '^split.count  *UINT16  *3$' "$tmp/insp" || fail "inspect: no split.count 3"
grep -q '^quantize.imatrix.entries_count  *INT32  *28$' "$tmp/insp" || fail "inspect: no imatrix entries"
grep -q '^Q6_K ' "$tmp/insp" || fail "inspect: no Q6_K totals"

# usage errors: 2; bad input: 3 with nothing written
"$dsq" quantize "$tmp/f32.gguf" "$tmp/x.gguf" --type Q8_0 --imatrix 2>"$tmp/err"
[ $? -eq 2 ] || fail "--imatrix without a value is not a usage error"
grep -qx "dsq quantize: --imatrix needs a value; see 'dsq quantize --help'" "$tmp/err" ||
    fail "--imatrix without a value: $(cat "$tmp/err")"
"$dsq" quantize "$tmp/f32.gguf" "$tmp/x.gguf" --type Q8_0 --split-max-size 10X 2>/dev/null
[ $? -eq 2 ] || fail "--split-max-size 10X is not a usage error"
printf 'GGUF\003\000\000\000' >"$tmp/broken.imatrix"
"$dsq" quantize "$tmp/f32.gguf" "$tmp/x.gguf" --type Q4_K_M --imatrix "$tmp/broken.imatrix" -q 2>"$tmp/err"
[ $? -eq 3 ] || fail "broken imatrix: not exit 3"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "broken imatrix: not one line: $(cat "$tmp/err")"
ls -a "$tmp" | grep -q x.gguf && fail "output left behind"
exit 0
