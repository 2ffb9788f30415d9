#!/bin/sh
# scripts/run-tests.sh BUILD_DIR: runs every cmocka binary and the CLI tests,
# then prints one closing line "N passed, N failed" over all of them.
# Tests run from the repository root and read ../shared (DSQ_SHARED overrides).
set -u
build=${1:-build/release}
export DSQ_BIN="$build/dsq"
export DSQ_SHARED="${DSQ_SHARED:-../shared}"
if [ ! -d "$DSQ_SHARED/data" ]; then
    echo "run-tests: $DSQ_SHARED/data not found (set DSQ_SHARED)" >&2
    exit 1
fi
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$build"/tests/test_*; do
    case "$t" in *.o | *.d) continue ;; esac
    [ -x "$t" ] || continue
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" ]; then
        echo "run-tests: $t exited with status $rc" >&2
        failed=$((failed + 1))
    fi
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    if sh "$t" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "[       OK ] $t"
    else
        failed=$((failed + 1))
        cat "$log"
        echo "[  FAILED  ] $t"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
