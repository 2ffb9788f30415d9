#!/bin/sh
# scripts/fuzz.sh [SECONDS_PER_HARNESS]: builds every fuzz/fuzz_*.c (or FUZZ_ONLY's) as a libFuzzer
# binary (clang, -fsanitize=fuzzer,address,undefined, the library sources linked
# in directly) into build/fuzz/, then runs each for SECONDS (default 60) on a
# copy of its seed corpus fuzz/corpus/<name>/ plus its regression inputs
# fuzz/regress/<name>/ (<name> is the file name without fuzz_ and .c), with the
# dictionary fuzz/<name>.dict when there is one.
#
# Exits non-zero when a harness does not build or when any run finds a crash,
# leak, timeout or sanitizer report; the input that did it is left in
# build/fuzz/artifacts/<name>/ (copy it into fuzz/regress/<name>/ once fixed).
# New corpus entries found by a run stay in build/fuzz/work/<name>/.
set -u
secs=${1:-60}
case "$secs" in
    '' | *[!0-9]* | 0) echo "fuzz.sh: SECONDS must be a whole number >= 1, got '$secs'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
CC_FUZZ=${CC_FUZZ:-clang}
out=build/fuzz
# a fresh Debian machine may lack clang or its libFuzzer runtime: scripts/deps.sh installs them
if [ "$CC_FUZZ" = clang ]; then
    sh scripts/deps.sh clang fuzz || exit 2
fi
command -v "$CC_FUZZ" >/dev/null 2>&1 || { echo "fuzz.sh: $CC_FUZZ not found (libFuzzer needs clang)" >&2; exit 2; }
pcs="libxxhash jansson libpcre2-8 zlib"
# shellcheck disable=SC2086
if ! dep_cflags=$(pkg-config --cflags $pcs) || ! dep_libs=$(pkg-config --libs $pcs); then
    echo "fuzz.sh: pkg-config cannot find $pcs" >&2
    exit 2
fi

# FUZZ_ONLY=<name>: just that harness (a longer run of a new one)
harnesses=$(ls fuzz/fuzz_${FUZZ_ONLY:-*}.c 2>/dev/null)
if [ -z "$harnesses" ]; then
    echo "fuzz.sh: no fuzz/fuzz_*.c" >&2
    exit 2
fi

# Same warnings as the Makefile, no OpenMP: one thread is what a fuzzer wants.
cflags="-std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -ffp-contract=off -pthread -I.
 -Wall -Wextra -Wno-unknown-pragmas -fsanitize=address,undefined -fno-sanitize-recover=all
 $dep_cflags"
mkdir -p "$out/obj" "$out/work" "$out/artifacts" || exit 2

# ---- the library, once for every harness (rebuilt when a .c or any .h changed)
objs=""
lib_failed=0
for src in $(ls core/*.c formats/*.c quantize/*.c tokenizer/*.c model/*.c weights/*.c gguf_export/*.c stream/*.c verify/*.c calib/*.c \
             convert/*.c 2>/dev/null); do
    obj="$out/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
    objs="$objs $obj"
    if [ -f "$obj" ] && [ ! "$src" -nt "$obj" ] &&
        [ -z "$(find core formats quantize tokenizer model weights gguf_export stream verify calib convert -name '*.h' \
                -newer "$obj" 2>/dev/null | head -n 1)" ]; then
        continue
    fi
    # shellcheck disable=SC2086
    if ! $CC_FUZZ $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj"; then
        echo "fuzz.sh: library source $src does not build" >&2
        rm -f "$obj"
        lib_failed=1
    fi
done
if [ $lib_failed -ne 0 ]; then
    echo "fuzz.sh: FAILED: the library does not build with $CC_FUZZ; no harness was run" >&2
    exit 1
fi

# ---- every harness: build all, then run those that built
failed=""
built=""
for h in $harnesses; do
    name=$(basename "$h" .c)
    name=${name#fuzz_}
    # shellcheck disable=SC2086
    if $CC_FUZZ $cflags -fsanitize=fuzzer -o "$out/fuzz_$name" "$h" $objs $dep_libs -lm; then
        built="$built $name"
    else
        echo "fuzz.sh: $h does not build" >&2
        failed="$failed $name(build)"
    fi
done

for name in $built; do
    work="$out/work/$name"
    art="$out/artifacts/$name"
    rm -rf "$work"
    mkdir -p "$work" "$art"
    if [ -d "fuzz/corpus/$name" ]; then
        cp -R "fuzz/corpus/$name/." "$work/"
    else
        echo "fuzz.sh: warning: no seed corpus fuzz/corpus/$name/" >&2
    fi
    extra=""
    if [ -d "fuzz/regress/$name" ]; then
        extra="fuzz/regress/$name"
    fi
    # a libFuzzer dictionary of the format's tokens, when the harness has one
    if [ -f "fuzz/$name.dict" ]; then
        extra="-dict=fuzz/$name.dict $extra"
    fi
    echo "== fuzz_$name: ${secs}s"
    # shellcheck disable=SC2086
    if "$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" $extra \
        >"$out/fuzz_$name.log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$out/fuzz_$name.log" |
            sed "s/^/fuzz_$name: /"
    else
        tail -n 60 "$out/fuzz_$name.log" >&2
        echo "fuzz.sh: fuzz_$name FAILED; input in $art/, log in $out/fuzz_$name.log" >&2
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz.sh: FAILED:$failed" >&2
    exit 1
fi
echo "fuzz.sh: all harnesses ran ${secs}s without findings:$built"
