#!/bin/sh
# tests/cli/gguf_split.sh: split GGUF input (formats/gguf_split.h) through every command
# that reads a GGUF. The sets are written by dsq's own --split-max-size (the writer whose
# files match llama-gguf-split's byte for byte, tests/test_quantize_gguf.c), from F32 GGUFs
# of the tiny llama and the tiny DeepSeek.
#
# A split set is the same model as the unsplit file, so:
#   - `dsq quantize` of the set gives the same bytes as of the unsplit file (also when the
#     output is split again);
#   - `dsq ppl` gives the same numbers to the last digit, `dsq verify` a KLD of exactly 0;
#   - `dsq inspect` lists every tensor of every file (39 for the llama, 70 for the DeepSeek:
#     the counts `dsq quantize --json` reports for the unsplit files).
# A broken set fails at open, exit 3, one line naming the file, with the message of its
# case (llama.cpp's checks in src/llama-model-loader.cpp, plus split.count and
# split.tensors.count equal in every file); quantize leaves nothing behind.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
tm="$shared/data/tiny-models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "gguf_split.sh: $*" >&2; exit 1; }

"$dsq" quantize "$tm/tiny-llama" "$tmp/l.gguf" --type F32 -q || fail "llama F32"
"$dsq" quantize "$tm/tiny-deepseek-v3" "$tmp/d.gguf" --type F32 -q || fail "deepseek F32"
# 4M of the llama's 14.7 MB and 10M of the DeepSeek's 30.3 MB: four files each
"$dsq" quantize "$tmp/l.gguf" "$tmp/ls.gguf" --type F32 --split-max-size 4M -q || fail "split llama"
"$dsq" quantize "$tmp/d.gguf" "$tmp/ds.gguf" --type F32 --split-max-size 10M -q || fail "split ds"
L1="$tmp/ls-00001-of-00004.gguf"
D1="$tmp/ds-00001-of-00004.gguf"
[ -f "$tmp/ls-00004-of-00004.gguf" ] && [ -f "$tmp/ds-00004-of-00004.gguf" ] ||
    fail "expected four files each: $(ls "$tmp")"

# ---- (a) quantize: same bytes ---------------------------------------------------------------
for m in l d; do
    first=$L1
    [ $m = d ] && first=$D1
    "$dsq" quantize "$tmp/$m.gguf" "$tmp/${m}_whole.gguf" --type Q4_K_M -q || fail "$m Q4_K_M"
    "$dsq" quantize "$first" "$tmp/${m}_from_split.gguf" --type Q4_K_M -q 2>"$tmp/err" ||
        fail "$m Q4_K_M from the split set: $(cat "$tmp/err")"
    cmp "$tmp/${m}_whole.gguf" "$tmp/${m}_from_split.gguf" || fail "$m: quantized split set differs"
done
"$dsq" quantize "$tmp/l.gguf" "$tmp/rw.gguf" --type Q8_0 --split-max-size 1M -q || fail "Q8_0 split"
"$dsq" quantize "$L1" "$tmp/rs.gguf" --type Q8_0 --split-max-size 1M -q || fail "Q8_0 split of split"
n=0
for f in "$tmp"/rw-*.gguf; do
    cmp "$f" "$tmp/rs${f#"$tmp"/rw}" || fail "split of split differs: $f"
    n=$((n + 1))
done
[ $n -gt 1 ] || fail "Q8_0 at 1M was not split"

# ---- (b) ppl and verify: same numbers ---------------------------------------------------------
W="--tokens $tm/eval.tokens.txt --ctx 256 --chunks 2 --threads 2 -q"
for m in l d; do
    first=$L1
    [ $m = d ] && first=$D1
    "$dsq" ppl "$tmp/$m.gguf" $W --json-out "$tmp/p_whole.json" >/dev/null || fail "$m ppl"
    "$dsq" ppl "$first" $W --json-out "$tmp/p_split.json" >/dev/null 2>"$tmp/err" ||
        fail "$m ppl of the split set: $(cat "$tmp/err")"
    sed 's/"seconds".*//' "$tmp/p_whole.json" >"$tmp/a"
    sed 's/"seconds".*//' "$tmp/p_split.json" >"$tmp/b"
    grep -q '"ppl": ' "$tmp/a" || fail "$m: no ppl in $(cat "$tmp/p_whole.json")"
    cmp -s "$tmp/a" "$tmp/b" || fail "$m ppl differs: $(cat "$tmp/p_whole.json" "$tmp/p_split.json")"
done
"$dsq" verify --ref "$tmp/l.gguf" --model "$L1" $W --max-kld 0 --json-out "$tmp/v.json" >/dev/null 2>"$tmp/err" ||
    fail "verify split against whole: $(cat "$tmp/err")"
grep -q '"max": 0.0,' "$tmp/v.json" || fail "verify: KLD not 0: $(cat "$tmp/v.json")"

# ---- (c) inspect: the whole set ---------------------------------------------------------------
"$dsq" inspect "$L1" >"$tmp/insp" || fail "inspect split set"
grep -q '39 tensors, split set of 4 files' "$tmp/insp" || fail "inspect header: $(head -n 1 "$tmp/insp")"
[ "$(grep -c '^blk\.' "$tmp/insp")" -eq 36 ] || fail "inspect: not 36 blk.* tensors"
grep -q '^output\.weight ' "$tmp/insp" && grep -q '^blk\.3\.ffn_up\.weight .* 3$' "$tmp/insp" ||
    fail "inspect: a tensor or its split column missing"
grep -q '^total  *39 ' "$tmp/insp" || fail "inspect: totals are not over 39 tensors"
"$dsq" inspect --json "$D1" >"$tmp/insp.json" || fail "inspect --json split set"
for k in '"split_count": 4' '"tensor_count": 70' '"split": 3'; do
    grep -q "$k" "$tmp/insp.json" || fail "inspect --json lacks $k"
done
[ "$(grep -c '"name": ' "$tmp/insp.json")" -eq 70 ] || fail "inspect --json: not 70 tensors"

# ---- (d) broken sets --------------------------------------------------------------------------
# overwrite, SKIP bytes past the first STRING in FILE, with printf's BYTES
patch_after() { # FILE STRING SKIP BYTES
    off=$(grep -boaF "$2" "$1" | head -n 1 | cut -d: -f1)
    [ -n "$off" ] || fail "no '$2' in $1"
    printf "$4" | dd of="$1" bs=1 seek=$((off + $3)) conv=notrunc 2>/dev/null || fail "dd $1"
}
fresh() {
    rm -rf "$tmp/c"
    mkdir "$tmp/c"
    cp "$tmp"/ls-0000?-of-00004.gguf "$tmp/c/"
}
C="$tmp/c/ls"
# CASE FILE_GIVEN FILE_NAMED TEXT: every GGUF reader refuses the set in the same words
expect_bad() {
    for cmd in inspect quantize ppl; do
        case $cmd in
            inspect) "$dsq" inspect "$2" >/dev/null 2>"$tmp/err" ;;
            quantize) "$dsq" quantize "$2" "$tmp/c/out.gguf" --type Q8_0 -q 2>"$tmp/err" ;;
            ppl) "$dsq" ppl "$2" $W >/dev/null 2>"$tmp/err" ;;
        esac
        rc=$?
        [ $rc -eq 3 ] || fail "$1: $cmd exit $rc, expected 3: $(cat "$tmp/err")"
        [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: $cmd: not one line: $(cat "$tmp/err")"
        grep -qF "$3" "$tmp/err" || fail "$1: $cmd: does not name $3: $(cat "$tmp/err")"
        grep -qF "$4" "$tmp/err" || fail "$1: $cmd: lacks '$4': $(cat "$tmp/err")"
    done
    ls -a "$tmp/c" | grep -q out && fail "$1: quantize left output behind"
    return 0
}

fresh
rm "$C-00004-of-00004.gguf"
expect_bad "missing split" "$C-00001-of-00004.gguf" "$C-00004-of-00004.gguf" \
    "missing: split 4 of 4"

fresh
expect_bad "later split given" "$C-00002-of-00004.gguf" "$C-00001-of-00004.gguf" \
    "this is split 2 of 4 (split.no 1); pass the first split"

fresh
cp "$C-00001-of-00004.gguf" "$tmp/c/model.gguf"
expect_bad "first split renamed" "$tmp/c/model.gguf" "$tmp/c/model.gguf" \
    "does not end in -00001-of-00004.gguf"

# split 2 of the DeepSeek's set: same position and count, another model
fresh
cp "$tmp/ds-00002-of-00004.gguf" "$C-00002-of-00004.gguf"
expect_bad "split of another set" "$C-00001-of-00004.gguf" "$C-00002-of-00004.gguf" \
    "split.tensors.count is 70 but"

# split.count (UINT16, after the 11-byte key and its 4-byte type) of split 2 set to 5
fresh
patch_after "$C-00002-of-00004.gguf" split.count 15 '\005\000'
expect_bad "split.count differs" "$C-00001-of-00004.gguf" "$C-00002-of-00004.gguf" \
    "split.count is 5 but"

# split.no (UINT16 after 8 + 4 bytes) of split 3 set to 1
fresh
patch_after "$C-00003-of-00004.gguf" split.no 12 '\001\000'
expect_bad "split.no differs" "$C-00001-of-00004.gguf" "$C-00003-of-00004.gguf" \
    "split.no is 1 but the file is split 3 of 4 (split.no 2)"

# split.tensors.count (INT32 after 19 + 4 bytes) 40 in every file: one tensor short
fresh
for f in "$C"-0000?-of-00004.gguf; do
    patch_after "$f" split.tensors.count 23 '\050\000\000\000'
done
expect_bad "tensor total wrong" "$C-00001-of-00004.gguf" "$C-00001-of-00004.gguf" \
    "split.tensors.count is 40 but the 4 splits hold 39 tensors"

# split 2's blk.1.attn_k.weight renamed blk.0.attn_k.weight, which split 1 holds
fresh
patch_after "$C-00002-of-00004.gguf" blk.1.attn_k.weight 4 '0'
expect_bad "duplicated tensor" "$C-00001-of-00004.gguf" "$C-00002-of-00004.gguf" \
    "tensor 'blk.0.attn_k.weight' is also in $C-00001-of-00004.gguf"
exit 0
