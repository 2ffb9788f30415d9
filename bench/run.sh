#!/bin/sh
# bench/run.sh: `make bench`. Each benchmark prints its figures as ratios
# against a baseline measured in the same run. Not part of the tests.
# BENCH_DIR (default build/bench-data) holds generated inputs, kept between runs.
set -eu
build=${BUILD:-build/release}
work=${BENCH_DIR:-build/bench-data}
mkdir -p "$work"
echo "== dsq convert fp8 bf16 vs cp, 2 shards and 16 shards of expert tensors (issue: ratio >= 0.8, peak RSS < 256 MiB, both shapes)"
"$build/bench/bench_convert" ./dsq "$work/convert" "${BENCH_REPS:-3}" "${DSQ_SHARED:-../shared}"
echo "== dsq ppl: forward-pass speed, GEMM share and machine peak (issue: >= 175 tokens/s on a 400M F32 llama at ctx 256, 2 threads; >= 50% of time in GEMM at >= 50% of peak)"
"$build/bench/bench_ppl" "$work" "${DSQ_SHARED:-../shared}" "${BENCH_THREADS:-2}" "${BENCH_PPL_CHUNKS:-4}"
echo "== quantizers: MB/s beside memcpy, and dsq quantize --pure vs llama-quantize --pure (issue: >= 2x for Q4_K/Q6_K, no slower for Q8_0/Q4_0, same bytes)"; "$build/bench/bench_quant" ./dsq "$work" "${DSQ_SHARED:-../shared}" "${BENCH_THREADS:-2}" "${BENCH_REPS:-3}"
echo "== dsq ppl vs llama.cpp's llama-perplexity on the same F32 GGUF (the 405M llama above), ctx 256, same threads (issue: at least its speed)"
llama_bin=${LLAMA_CPP_BIN:-/work/llama.cpp-src/build/bin}
gguf="$work/quant-llama-f32.gguf"
text="${DSQ_SHARED:-../shared}/data/tiny-models/eval.txt"
if [ -x "$llama_bin/llama-perplexity" ] && [ -f "$gguf" ]; then
    nt=${BENCH_THREADS:-2}
    t0=$(date +%s.%N)
    d=$(./dsq ppl "$gguf" --text "$text" --ctx 256 --chunks 8 --threads "$nt" -q)
    t1=$(date +%s.%N)
    l=$("$llama_bin/llama-perplexity" -m "$gguf" -f "$text" -c 256 --chunks 8 -t "$nt" 2>&1)
    t2=$(date +%s.%N)
    dtps=$(echo "$d" | sed -n 's/.*; \([0-9.]*\) tokens\/s).*/\1/p')
    ltps=$(echo "$l" | sed -n 's/.*prompt eval time.*, *\([0-9.]*\) tokens per second.*/\1/p')
    echo "  dsq ppl          : $(echo "$d" | sed 's/ *(.*//')  forward $dtps tokens/s, whole command $(echo "$t1 - $t0" | bc) s"
    echo "  llama-perplexity : $(echo "$l" | grep 'Final estimate' | sed 's/Final estimate: //')  forward $ltps tokens/s, whole command $(echo "$t2 - $t1" | bc) s"
    echo "  ratio dsq/llama.cpp forward speed: $(echo "scale=2; $dtps / $ltps" | bc) (target >= 1.00)"
else
    echo "  skipped: no $llama_bin/llama-perplexity (set LLAMA_CPP_BIN) or no $gguf (made by bench_quant)"
fi
