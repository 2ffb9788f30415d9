#!/bin/sh
# tests/cli/cli_basics.sh: what a user of the command line sees: --help on every
# command, exit codes (0 ok, 2 usage, 3 bad input, 4 I/O), one-line errors that
# name the file, --json that a machine can read, --dry-run writing nothing.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
fp8="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_basics: $*" >&2; exit 1; }

expect_rc() { # expected_rc description command...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] || fail "$what: exit $rc, expected $want; stderr: $(cat "$tmp/err")"
}

expect_rc 0 "dsq --help" "$dsq" --help
grep -q "convert" "$tmp/out" || fail "dsq --help does not list convert"
expect_rc 0 "convert --help" "$dsq" convert --help
grep -q "usage: dsq convert fp8 bf16" "$tmp/out" || fail "convert --help text"
expect_rc 0 "inspect --help" "$dsq" inspect --help
expect_rc 2 "no command" "$dsq"
expect_rc 2 "unknown command" "$dsq" frobnicate
expect_rc 2 "convert without args" "$dsq" convert
expect_rc 2 "convert unknown option" "$dsq" convert fp8 bf16 a b --bogus
expect_rc 2 "convert bad threads" "$dsq" convert fp8 bf16 a b --threads 0
expect_rc 2 "convert unsupported pair" "$dsq" convert fp16 int4 a b
expect_rc 3 "convert missing input" "$dsq" convert fp8 bf16 "$tmp/nope" "$tmp/out1"
grep -q "nope" "$tmp/err" || fail "error does not name the missing directory"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "error is not one line: $(cat "$tmp/err")"
expect_rc 3 "inspect missing file" "$dsq" inspect "$tmp/nope.safetensors"

# a corrupt shard: a one-line error naming the file, exit 3, nothing written
mkdir "$tmp/bad"
cp "$fp8"/* "$tmp/bad/"
chmod u+w "$tmp/bad"/*
head -c 1000 "$fp8/model-00002-of-00002.safetensors" >"$tmp/bad/model-00002-of-00002.safetensors"
expect_rc 3 "convert corrupt shard" "$dsq" convert fp8 bf16 "$tmp/bad" "$tmp/out2"
grep -q "model-00002-of-00002.safetensors" "$tmp/err" || fail "error does not name the shard"
[ ! -e "$tmp/out2" ] || fail "output directory created for a corrupt input"

# dry run: the plan on stdout, nothing on disk
expect_rc 0 "dry run" "$dsq" convert fp8 bf16 "$fp8" "$tmp/out3" --dry-run
grep -q "model-00001-of-00002.safetensors" "$tmp/out" || fail "dry run does not list shards"
[ ! -e "$tmp/out3" ] || fail "dry run wrote something"

# the real thing, with --json
expect_rc 0 "convert --json" "$dsq" convert fp8 bf16 "$fp8" "$tmp/out4" --json
grep -q '"tensors_converted": 104' "$tmp/out" || fail "convert --json: $(cat "$tmp/out")"
[ -f "$tmp/out4/config.json" ] || fail "no config.json"
if grep -q quantization_config "$tmp/out4/config.json"; then fail "quantization_config kept"; fi

expect_rc 0 "inspect dir" "$dsq" inspect "$tmp/out4"
grep -q "^BF16 " "$tmp/out" || fail "inspect totals: $(tail -n 4 "$tmp/out")"
if grep -q "F8_E4M3" "$tmp/out"; then fail "FP8 tensor left in the output"; fi
expect_rc 0 "inspect --json" "$dsq" inspect "$tmp/out4/model-00001-of-00002.safetensors" --json
grep -q '"format": "pt"' "$tmp/out" || fail "inspect --json lacks the shard metadata"
grep -q '"tensor_count"' "$tmp/out" || fail "inspect --json lacks tensor_count"

# an unwritable output directory is an I/O error (exit 4), not a crash
if [ "$(id -u)" -ne 0 ]; then
    mkdir "$tmp/ro" && chmod 500 "$tmp/ro"
    expect_rc 4 "unwritable output" "$dsq" convert fp8 bf16 "$fp8" "$tmp/ro/out"
fi
echo "cli_basics: ok"
