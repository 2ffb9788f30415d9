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
echo "== dsq ppl: forward-pass speed, GEMM share and machine peak (issue: >= 175 tokens/s on a 400M F32 llama at ctx 256, 2 threads; >= 50% of time in GEMM at >= 50% of peak)"
"$build/bench/bench_ppl" "$work" "${DSQ_SHARED:-../shared}" "${BENCH_THREADS:-2}" "${BENCH_PPL_CHUNKS:-4}"
echo "== quantizers: MB/s beside memcpy, and dsq quantize --pure vs llama-quantize --pure (issue: >= 2x for Q4_K/Q6_K, no slower for Q8_0/Q4_0, same bytes)"; "$build/bench/bench_quant" ./dsq "$work" "${DSQ_SHARED:-../shared}" "${BENCH_THREADS:-2}" "${BENCH_REPS:-3}"
