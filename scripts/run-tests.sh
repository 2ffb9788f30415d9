#!/bin/sh
# scripts/run-tests.sh BUILD_DIR: has scripts/deps.sh install what the suite runs (the test
# group), runs every cmocka binary and the CLI tests, then prints one closing line
# "N passed, N failed, N skipped" over all of them, after the names of the skipped ones.
# A test is skipped when it cannot run here (no AVX2 or AVX-512 on this CPU, valgrind on a
# sanitizer build): a cmocka test calls skip(); a CLI test exits 77 after a line saying why.
# Tests run from the repository root and read ../shared (DSQ_SHARED overrides).
set -u
build=${1:-build/release}
export DSQ_BIN="$build/dsq"
export DSQ_SHARED="${DSQ_SHARED:-../shared}"
if [ ! -d "$DSQ_SHARED/data" ]; then
    echo "run-tests: $DSQ_SHARED/data not found (set DSQ_SHARED)" >&2
    exit 1
fi
sh "$(dirname "$0")/deps.sh" test || exit 1
SKIP=77 # the CLI tests' "cannot run here" (automake's convention)
passed=0
failed=0
skipped=0
skips=""
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
    s=$(sed -n 's/.*\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
    # cmocka lists each skipped test by name after the count line
    for name in $(sed -n 's/^\[  SKIPPED \] \([A-Za-z0-9_]*\)$/\1/p' "$log" | sort -u); do
        skips="$skips ${t##*/}:$name"
    done
    if [ $rc -ne 0 ] && [ -z "$f" ]; then
        echo "run-tests: $t exited with status $rc" >&2
        failed=$((failed + 1))
    fi
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    sh "$t" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "[       OK ] $t"
    elif [ $rc -eq $SKIP ]; then
        skipped=$((skipped + 1))
        skips="$skips $t"
        echo "[  SKIPPED ] $t: $(tail -n 1 "$log")"
    else
        failed=$((failed + 1))
        cat "$log"
        echo "[  FAILED  ] $t"
    fi
done
[ -z "$skips" ] || echo "run-tests: skipped:$skips"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
