#!/bin/sh
# scripts/demo.sh: `make demo`. Converts the bundled tiny DeepSeek-V3 FP8
# checkpoint to BF16 and shows what came out.
set -eu
in=models/tiny-deepseek-v3-fp8
out=build/demo/tiny-deepseek-v3-bf16
mkdir -p build/demo
echo "== input: $in"
./dsq inspect "$in" | tail -n 6
echo
echo "== ./dsq convert fp8 bf16 $in $out"
./dsq convert fp8 bf16 "$in" "$out"
echo
echo "== output: $out"
./dsq inspect "$out" | tail -n 5
echo
ls -l "$out"
