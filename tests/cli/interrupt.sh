#!/bin/sh
# tests/cli/interrupt.sh: SIGINT and SIGTERM in the middle of `dsq convert`
# (issue #10 item 5) leave nothing behind: the exit status is 128 + the signal
# (130, 143; README "Reliability"), no hidden temporary remains, nothing looks
# complete (no config.json), and --resume then finishes to the bytes of an
# uninterrupted run. A temporary of a killed run is removed by the next run to
# the same directory, and one that a live process holds is not.
#
# The signal is timed by core/fault.h: DSQ_FAULT=write@FILE:N:STOP stops the
# process at its N-th write to FILE, this script sends the signal and SIGCONT,
# as a user's Ctrl-C would arrive; :INT makes the process signal itself.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
in="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
s1=model-00001-of-00002.safetensors
s2=model-00002-of-00002.safetensors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "interrupt: $*" >&2; exit 1; }

"$dsq" convert fp8 bf16 -q "$in" "$tmp/ref" 2>"$tmp/err" || fail "uninterrupted run: $(cat "$tmp/err")"

no_temps() { # dir what
    left=$(find "$1" -name '.*.dsqtmp.*' | tr '\n' ' ')
    [ -z "$left" ] || fail "$2: temporaries left: $left"
    [ ! -e "$1/config.json" ] || fail "$2: config.json exists, the output looks complete"
}

same_as_ref() { # dir what
    for f in $(cd "$tmp/ref" && ls -A); do
        cmp -s "$tmp/ref/$f" "$1/$f" || fail "$2: $f differs from the uninterrupted run's"
    done
}

# an external signal while the process is mid-write
external() { # signal expected-status fault what
    out="$tmp/$1"
    DSQ_FAULT="$3" "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>"$tmp/err.$1" &
    pid=$!
    i=0
    while [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" != T ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || { kill -9 $pid; fail "$4: never reached the stop point"; }
        sleep 0.05
    done
    ls -A "$out" | grep -q dsqtmp || fail "$4: no temporary while stopped mid-write (test is not testing)"
    kill "-$1" $pid
    kill -CONT $pid
    wait $pid
    rc=$?
    [ $rc -eq "$2" ] || fail "$4: exit $rc, expected $2: $(cat "$tmp/err.$1")"
    grep -q "interrupted" "$tmp/err.$1" || fail "$4: no 'interrupted' message: $(cat "$tmp/err.$1")"
    no_temps "$out" "$4"
    "$dsq" convert fp8 bf16 -q --resume "$in" "$out" 2>"$tmp/err" ||
        fail "$4: --resume after the interrupt: $(cat "$tmp/err")"
    same_as_ref "$out" "$4, then --resume"
}

external INT 130 "write@$s1:3:STOP" "SIGINT during shard 1"
external TERM 143 "write@$s2:2:STOP" "SIGTERM during shard 2"

# the process interrupts itself from the writer thread, mid-shard
out="$tmp/self"
DSQ_FAULT="write@$s1:2:INT" "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 130 ] || fail "self SIGINT: exit $rc, expected 130: $(cat "$tmp/err")"
no_temps "$out" "self SIGINT"

# a killed run's temporary (SIGKILL: nothing could clean up) is swept by the
# next run to the same directory, even one without --resume
out="$tmp/killed"
DSQ_FAULT="write@$s2:2" "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>&1
ls -A "$out" | grep -q "^\.$s2\.dsqtmp\." || fail "SIGKILL left no temporary (test is not testing)"
"$dsq" convert fp8 bf16 -q --force "$in" "$out" 2>"$tmp/err" || fail "run after SIGKILL: $(cat "$tmp/err")"
[ -z "$(find "$out" -name '.*.dsqtmp.*')" ] || fail "the next run left the killed run's temporary"
same_as_ref "$out" "after SIGKILL and a --force run"

# dsq quantize: the signal removes the GGUF's temporary (exit 130), and a
# SIGKILL-ed run's temporary is removed by the next run to the same path
llama="$shared/data/tiny-models/tiny-llama"
mkdir -p "$tmp/q"
DSQ_FAULT="write@x.gguf:3:STOP" "$dsq" quantize "$llama" "$tmp/q/x.gguf" --type Q8_0 -q >/dev/null 2>"$tmp/err.q" &
pid=$!
i=0
while [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" != T ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { kill -9 $pid; fail "quantize: never stopped"; }
    sleep 0.05
done
ls -A "$tmp/q" | grep -q '^\.x\.gguf\.dsqtmp\.' || fail "quantize: no temporary while stopped (test is not testing)"
kill -INT $pid
kill -CONT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "quantize SIGINT: exit $rc, expected 130: $(cat "$tmp/err.q")"
[ -z "$(ls -A "$tmp/q")" ] || fail "quantize SIGINT: left $(ls -A "$tmp/q" | tr '\n' ' ')"
DSQ_FAULT="write@x.gguf:3" "$dsq" quantize "$llama" "$tmp/q/x.gguf" --type Q8_0 -q >/dev/null 2>&1
ls -A "$tmp/q" | grep -q '^\.x\.gguf\.dsqtmp\.' || fail "quantize SIGKILL left no temporary (test is not testing)"
"$dsq" quantize "$llama" "$tmp/q/x.gguf" --type Q8_0 -q >/dev/null 2>"$tmp/err.q" ||
    fail "quantize after SIGKILL: $(cat "$tmp/err.q")"
[ "$(ls -A "$tmp/q")" = x.gguf ] || fail "quantize after SIGKILL: left $(ls -A "$tmp/q" | tr '\n' ' ')"

# a temporary that a live process holds open (flock) is not another run's litter
out="$tmp/live"
DSQ_FAULT="write@$s1:2:STOP" "$dsq" convert fp8 bf16 -q "$in" "$out" >/dev/null 2>&1 &
pid=$!
i=0
while [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" != T ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { kill -9 $pid; fail "live: never stopped"; }
    sleep 0.05
done
"$dsq" convert fp8 bf16 -q --resume "$in" "$out" >/dev/null 2>"$tmp/err.live" ||
    fail "a second run beside a stopped one: $(cat "$tmp/err.live")"
ls -A "$out" | grep -q "^\.$s1\.dsqtmp\." || fail "a live run's temporary was removed by another run"
kill -TERM $pid
kill -CONT $pid
wait $pid
[ $? -eq 143 ] || fail "the stopped run, terminated: expected exit 143"
[ -z "$(find "$out" -name '.*.dsqtmp.*')" ] || fail "the terminated run left its temporary"
exit 0
