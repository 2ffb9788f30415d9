#!/bin/sh
# tests/cli/crash_safety.sh: `dsq convert fp8 bf16` killed with SIGKILL at
# several points (core/fault.h: DSQ_FAULT=POINT@FILE:N) must leave no output
# that looks complete: no config.json, no file under its final name that does
# not parse. `--resume` must then finish, and the result must be byte-identical
# to an uninterrupted run's. A write error (ulimit -f) must fail with a clear
# message, a non-zero exit, no config.json and no temporary file left.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
in="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
s1=model-00001-of-00002.safetensors
s2=model-00002-of-00002.safetensors
idx=model.safetensors.index.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "crash_safety: $*" >&2; exit 1; }

[ -f "$in/$s2" ] || fail "$in: the two-shard tiny checkpoint is missing"
"$dsq" convert fp8 bf16 -q "$in" "$tmp/ref" 2>"$tmp/err" ||
    fail "uninterrupted run failed: $(cat "$tmp/err")"

# No file that looks complete: no config.json, every shard under its final name parses.
check_incomplete() { # dir what
    [ ! -e "$1/config.json" ] || fail "$2: config.json exists after the kill"
    for f in "$1"/*.safetensors; do
        [ -e "$f" ] || continue
        "$dsq" inspect "$f" >/dev/null 2>&1 ||
            fail "$2: $(basename "$f") has its final name but does not parse"
    done
}

# The same file names (no temporaries left over) and the same bytes as ref.
check_same() { # dir what
    (cd "$tmp/ref" && ls -A) >"$tmp/want"
    (cd "$1" && ls -A) >"$tmp/got"
    cmp -s "$tmp/want" "$tmp/got" ||
        fail "$2: files differ from the uninterrupted run's: $(diff "$tmp/want" "$tmp/got" | tr '\n' ' ')"
    while IFS= read -r f; do
        cmp -s "$tmp/ref/$f" "$1/$f" || fail "$2: $f differs from the uninterrupted run's"
    done <"$tmp/want"
}

n=0
kill_resume() { # fault what [file that must not exist yet]
    n=$((n + 1))
    out="$tmp/k$n"
    DSQ_FAULT=$1 "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -gt 128 ] || fail "$2 (DSQ_FAULT=$1): exit $rc, expected death by SIGKILL (point never reached?)"
    check_incomplete "$out" "$2"
    if [ $# -ge 3 ]; then
        [ ! -e "$out/$3" ] || fail "$2: $3 exists under its final name"
    fi
    "$dsq" convert fp8 bf16 -q --resume "$in" "$out" 2>"$tmp/err" ||
        fail "$2: --resume failed: $(cat "$tmp/err")"
    check_same "$out" "$2, then --resume"
}

kill_resume "write@$s1:3" "killed during shard 1" "$s1"
kill_resume "commit@$s1:1" "killed with shard 1 written, before its rename" "$s1"
kill_resume "commit@dsq-manifest.json:1" "killed between shards (shard 1 renamed, not recorded)" "$s2"
kill_resume "write@$s2:2" "killed during shard 2" "$s2"
kill_resume "write@$idx:1" "killed during the index write" "$idx"
kill_resume "commit@$idx:1" "killed with the index written, before its rename" "$idx"
kill_resume "commit@config.json:1" "killed before config.json is renamed"

# --resume really skips what was finished: kill during shard 2, then shard 1 is reused.
out="$tmp/skip"
DSQ_FAULT="write@$s2:2" "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>&1
"$dsq" convert fp8 bf16 --json --resume "$in" "$out" >"$tmp/json" 2>"$tmp/err" ||
    fail "resume after a kill in shard 2: $(cat "$tmp/err")"
grep -q '"shards_resumed": 1' "$tmp/json" || fail "--resume did not skip shard 1: $(cat "$tmp/json")"
check_same "$out" "resume after a kill in shard 2"

# A write error: a file-size limit below the first shard's size (a few hundred
# KiB whether the shell counts in 512- or 1024-byte blocks).
out="$tmp/limited"
(ulimit -f 1024 && exec "$dsq" convert fp8 bf16 -q "$in" "$out") >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "write error: exit $rc, expected a non-zero exit code (not a signal)"
[ $rc -eq 4 ] || fail "write error: exit $rc, expected 4 (I/O)"
grep -q "^dsq convert: .*$s1.*File too large" "$tmp/err" ||
    fail "write error: message does not name the file and the cause: $(cat "$tmp/err")"
[ ! -e "$out/config.json" ] || fail "write error: config.json written"
[ ! -e "$out/$s1" ] || fail "write error: $s1 exists under its final name"
if ls -A "$out" | grep -q 'dsqtmp'; then
    fail "write error: temporary files left: $(ls -A "$out" | tr '\n' ' ')"
fi
"$dsq" convert fp8 bf16 -q --resume "$in" "$out" 2>"$tmp/err" ||
    fail "--resume after the write error failed: $(cat "$tmp/err")"
check_same "$out" "write error, then --resume"
exit 0
