#!/bin/sh
# tests/cli/determinism.sh: the same input gives byte-identical output whatever
# the thread count: `dsq convert fp8 bf16` with --threads 1, 2, 3 and the
# default (all cores), every output file compared with cmp, the manifest too.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
in="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "determinism: $*" >&2; exit 1; }

"$dsq" convert fp8 bf16 -q --threads 1 "$in" "$tmp/t1" 2>"$tmp/err" ||
    fail "--threads 1 failed: $(cat "$tmp/err")"
(cd "$tmp/t1" && ls -A) >"$tmp/want"
[ -s "$tmp/want" ] || fail "--threads 1 wrote nothing"
for t in 2 3 default; do
    if [ "$t" = default ]; then
        "$dsq" convert fp8 bf16 -q "$in" "$tmp/t$t" 2>"$tmp/err" || fail "default threads failed: $(cat "$tmp/err")"
    else
        "$dsq" convert fp8 bf16 -q --threads "$t" "$in" "$tmp/t$t" 2>"$tmp/err" ||
            fail "--threads $t failed: $(cat "$tmp/err")"
    fi
    (cd "$tmp/t$t" && ls -A) >"$tmp/got"
    cmp -s "$tmp/want" "$tmp/got" || fail "threads $t: other files than with --threads 1"
    while IFS= read -r f; do
        cmp -s "$tmp/t1/$f" "$tmp/t$t/$f" || fail "threads $t: $f differs from --threads 1"
    done <"$tmp/want"
done
exit 0
