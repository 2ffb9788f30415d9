#!/bin/sh
# bench/run.sh: `make bench`. Each benchmark prints its figures as ratios
# against a baseline measured in the same run. Not part of the tests.
# BENCH_DIR (default build/bench-data) holds generated inputs, kept between runs.
set -eu
build=${BUILD:-build/release}
work=${BENCH_DIR:-build/bench-data}
mkdir -p "$work"
echo "== dsq convert fp8 bf16 vs cp (issue: ratio >= 0.8, peak RSS < 256 MiB)"
"$build/bench/bench_convert" ./dsq "$work/convert" "${BENCH_REPS:-3}" "${DSQ_SHARED:-../shared}"
