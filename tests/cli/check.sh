#!/bin/sh
# tests/cli/check.sh: `dsq check DIR` (issue #10 item 4) against the manifest a
# conversion wrote: exit 0 when intact; exit 1 naming the file when one byte of
# an output changed or a file is missing; exit 3 without a manifest; --json is
# one document a JSON parser accepts, with the human lines on stderr; exit 1
# for the directory of a run that did not finish.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
in="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
s1=model-00001-of-00002.safetensors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check: $*" >&2; exit 1; }
out="$tmp/out"

"$dsq" convert fp8 bf16 -q "$in" "$out" 2>"$tmp/err" || fail "convert: $(cat "$tmp/err")"
"$dsq" check "$out" >"$tmp/o" 2>"$tmp/e" || fail "intact output: exit $?: $(cat "$tmp/o" "$tmp/e")"
n=$(ls -A "$out" | grep -cv '^dsq-manifest.json$')
grep -q "all $n files intact" "$tmp/o" || fail "intact output: summary: $(cat "$tmp/o")"

# (--json's document is parsed member by member in tests/test_cli_json.c)
"$dsq" check "$out" --json >"$tmp/j" 2>"$tmp/e" || fail "--json on intact output: exit $?"
grep -q '"n_bad": *0' "$tmp/j" || fail "--json: n_bad is not 0: $(cat "$tmp/j")"
! grep -q '^{' "$tmp/e" || fail "--json: the document went to stderr"

# one byte of a shard's tensor data changed (the end of the file is data): its low bit flipped
size=$(wc -c <"$out/$s1")
off=$((size - 3))
b=$(od -An -tu1 -j "$off" -N1 "$out/$s1" | tr -d ' ')
printf "\\$(printf %o $((b ^ 1)))" | dd of="$out/$s1" bs=1 seek="$off" conv=notrunc 2>/dev/null
[ "$(od -An -tu1 -j "$off" -N1 "$out/$s1" | tr -d ' ')" -eq $((b ^ 1)) ] || fail "the byte flip did not happen"
"$dsq" check "$out" >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 1 ] || fail "a changed byte: exit $rc, expected 1"
grep -q "^mismatch *$s1: xxh3" "$tmp/e" || fail "a changed byte: not named: $(cat "$tmp/e")"
rm "$out/tokenizer.json"
"$dsq" check "$out" --json >"$tmp/j" 2>"$tmp/e"
[ $? -eq 1 ] || fail "a missing file: expected exit 1"
grep -q '"n_bad": *2' "$tmp/j" || fail "--json with a missing and a changed file: $(cat "$tmp/j")"

rm "$out/dsq-manifest.json"
"$dsq" check "$out" >/dev/null 2>"$tmp/e"
[ $? -eq 3 ] || fail "no manifest: expected exit 3"
grep -q "dsq-manifest.json" "$tmp/e" || fail "no manifest: message does not name it: $(cat "$tmp/e")"
# a run killed after shard 1: what it wrote is intact, but the directory is not whole
DSQ_FAULT="write@model-00002-of-00002.safetensors:2" "$dsq" convert fp8 bf16 -q "$in" "$tmp/half" >/dev/null 2>&1
"$dsq" check "$tmp/half" >/dev/null 2>"$tmp/e"
[ $? -eq 1 ] || fail "an interrupted run's directory: expected exit 1"
grep -q "did not finish" "$tmp/e" || fail "an interrupted run's directory: not said: $(cat "$tmp/e")"

"$dsq" check >/dev/null 2>&1
[ $? -eq 2 ] || fail "no DIR: expected a usage error (exit 2)"
"$dsq" check --help | grep -q "^examples:" || fail "--help has no examples"
exit 0
