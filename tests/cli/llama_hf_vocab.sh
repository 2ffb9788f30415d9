#!/bin/sh
# tests/cli/llama_hf_vocab.sh: `dsq quantize` of the tiny llama whose only tokenizer
# is a broken Llama-2 style tokenizer.json (BPE, byte_fallback, Sequence decoder:
# the converter's LlamaHfVocab case) must exit with a non-zero status below 128
# (no crash), print exactly one line on stderr naming the defect, and leave no
# GGUF. The vocabulary rules themselves are tests/test_llama_hf_vocab.c.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
llama="$shared/data/tiny-models/tiny-llama"
[ -f "$llama/config.json" ] || { echo "llama_hf_vocab: $llama missing" >&2; exit 1; }
llama=$(cd "$llama" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "llama_hf_vocab: $*" >&2; exit 1; }

head='{"decoder":{"type":"Sequence","decoders":[]},"model":{"type":"BPE","byte_fallback":true,'
n=0
# $1 what, $2 tokenizer.json, $3 a word the message must contain, $4 vocab_size (optional)
check() {
    n=$((n + 1))
    d="$tmp/c$n"
    mkdir "$d"
    ln -s "$llama/model.safetensors" "$d/"
    sed "s/\"vocab_size\": 1024/\"vocab_size\": ${4:-1024}/" "$llama/config.json" >"$d/config.json"
    printf '%s' "$2" >"$d/tokenizer.json"
    "$dsq" quantize "$d" "$d/out.gguf" --type Q8_0 -q >/dev/null 2>"$d/err"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "$1: exit $rc: $(cat "$d/err")"
    [ "$(wc -l <"$d/err")" -eq 1 ] || fail "$1: stderr is not one line: $(cat "$d/err")"
    grep -q -- "$3" "$d/err" || fail "$1: message lacks '$3': $(cat "$d/err")"
    [ ! -e "$d/out.gguf" ] || fail "$1: out.gguf left behind"
}

check "missing id" "$head"'"vocab":{"<unk>":0,"<s>":1,"</s>":3}}}' "not in \[0, 3)"
check "duplicate id" "$head"'"vocab":{"<unk>":0,"<s>":1,"</s>":1}}}' "to both"
check "added id out of range" "$head"'"vocab":{"<unk>":0,"<s>":1,"</s>":2}},"added_tokens":[{"id":4294967296,"content":"<x>"}]}' "loads as id 3"
check "more tokens than vocab_size" "$head"'"vocab":{"<unk>":0,"<s>":1,"</s>":2,"a":3}}}' "more than config.json's vocab_size 3" 3
check "not JSON" "$head"'"vocab":{' "tokenizer.json"
exit 0
