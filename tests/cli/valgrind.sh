#!/bin/sh
# tests/cli/valgrind.sh: the end-to-end commands under valgrind's memcheck, which
# sees what the sanitizer build does not (uninitialised reads in the release
# build's SIMD paths, leaks at exit): no error, no definite leak.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
fp8="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# ASan and valgrind cannot run the same binary; `make asan` has its own checks: skipped (77)
if grep -q __asan_init "$dsq" 2>/dev/null; then
    echo "valgrind.sh: $dsq is a sanitizer build; memcheck runs on the release build"
    exit 77
fi
# not a skip: scripts/run-tests.sh has scripts/deps.sh install it first
command -v valgrind >/dev/null 2>&1 ||
    { echo "valgrind.sh: valgrind is not installed (sh scripts/deps.sh test installs it)" >&2; exit 1; }
vg() { # what, then the command
    what=$1
    shift
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$@" \
        >/dev/null 2>"$tmp/vg" || { echo "valgrind.sh: $what: $(cat "$tmp/vg")" >&2; exit 1; }
}
vg "convert" "$dsq" convert fp8 bf16 "$fp8" "$tmp/bf16" -q
vg "inspect dir" "$dsq" inspect "$tmp/bf16" --json
vg "quantize" "$dsq" quantize "$fp8" "$tmp/q.gguf" --type Q4_K_M -q --threads 1
vg "inspect gguf" "$dsq" inspect "$tmp/q.gguf"
# a truncated shard: the error path must be as clean as the success path
head -c 5000 "$fp8/model-00001-of-00002.safetensors" >"$tmp/cut.safetensors"
valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    "$dsq" inspect "$tmp/cut.safetensors" >/dev/null 2>"$tmp/vg"
rc=$?
[ $rc -eq 3 ] || { echo "valgrind.sh: corrupt input: exit $rc, expected 3: $(cat "$tmp/vg")" >&2; exit 1; }
exit 0
