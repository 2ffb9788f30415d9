#!/bin/sh
# tests/cli/quantize_safety.sh: `dsq quantize` killed with SIGKILL mid-file or
# just before the rename (core/fault.h), or stopped by a file-size limit, must
# leave no GGUF under its final name and no temporary; a rerun must give the
# same bytes as an uninterrupted run. The output must not depend on the thread
# count, with or without splits.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
in="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "quantize_safety: $*" >&2; exit 1; }

"$dsq" quantize "$in" "$tmp/ref.gguf" --type Q4_K_M -q --threads 2 2>"$tmp/err" ||
    fail "uninterrupted run failed: $(cat "$tmp/err")"

for fault in "write@q.gguf:5" "write@q.gguf:40" "commit@q.gguf:1"; do
    mkdir "$tmp/o"
    DSQ_FAULT=$fault "$dsq" quantize "$in" "$tmp/o/q.gguf" --type Q4_K_M -q >/dev/null 2>&1
    rc=$?
    [ $rc -gt 128 ] || fail "DSQ_FAULT=$fault: exit $rc, expected death by SIGKILL"
    [ ! -e "$tmp/o/q.gguf" ] || fail "DSQ_FAULT=$fault: q.gguf exists under its final name"
    "$dsq" quantize "$in" "$tmp/o/q.gguf" --type Q4_K_M -q 2>"$tmp/err" ||
        fail "rerun after DSQ_FAULT=$fault failed: $(cat "$tmp/err")"
    cmp -s "$tmp/ref.gguf" "$tmp/o/q.gguf" || fail "rerun after DSQ_FAULT=$fault differs"
    rm -rf "$tmp/o"
done

# a file-size limit: exit 4 naming the file, nothing left behind
mkdir "$tmp/lim"
(ulimit -f 64 && exec "$dsq" quantize "$in" "$tmp/lim/q.gguf" --type Q8_0 -q) >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 4 ] || fail "write error: exit $rc, expected 4: $(cat "$tmp/err")"
grep -q "q.gguf" "$tmp/err" || fail "write error: message does not name the file: $(cat "$tmp/err")"
[ -z "$(ls -A "$tmp/lim")" ] || fail "write error: left behind: $(ls -A "$tmp/lim" | tr '\n' ' ')"

# determinism: 1 thread and 2 threads, plain and split
for t in 1 2; do
    "$dsq" quantize "$in" "$tmp/t$t.gguf" --type Q4_K_M -q --threads "$t" 2>"$tmp/err" ||
        fail "--threads $t: $(cat "$tmp/err")"
    cmp -s "$tmp/ref.gguf" "$tmp/t$t.gguf" || fail "--threads $t gives other bytes"
    mkdir "$tmp/s$t"
    "$dsq" quantize "$in" "$tmp/s$t/q.gguf" --type Q6_K -q --threads "$t" --split-max-size 2M \
        2>"$tmp/err" || fail "split, --threads $t: $(cat "$tmp/err")"
done
for f in "$tmp"/s1/*; do
    cmp -s "$f" "$tmp/s2/$(basename "$f")" || fail "split $(basename "$f") differs between thread counts"
done
exit 0
