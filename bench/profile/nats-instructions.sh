#!/bin/bash
# Instructions per call over NATS at one end, counted by valgrind (callgrind): steady on a busy
# machine, where times are not. Starts a nats-server (never the system one on 4222), the callee
# (nats-callee.mjs, or nats-raw-callee.mjs for `raw`) and the caller (nats-ir-caller.mjs: a keel
# client kernel, or the hand-muxed raw request of bench/hand-muxer.ts) of <tree> (built: `npm run
# build` there), the measured end under callgrind (--separate-threads=yes), the other without it;
# the caller makes <warm> calls at <inFlight> (IN_FLIGHT, default 64) in flight, the counters are
# zeroed, it makes <calls> more, the measured end dumps. Prints the count per call of every thread
# (V8's compiler and GC threads included) and of the main thread alone (thread 1's dump); user
# space only, not the kernel's (socket reads and writes are left out). A count is a sample: compare
# several runs of each side, alternating keel and raw.
# Warm-up: on 2026-12-02 (Node 24, 7c631e9) the keel caller was still warming after 20 000 calls:
# 45-47k instructions a call (40-41k main thread) over the next 20 000, against 40-41k (37k) after
# 60 000 or over 40 000 measured; the raw caller and both callees moved by 1-2k at most. Hence the
# default warm=60000.
# NODE_FLAGS (in the environment; NODE_ARGS, its earlier name, still read) go to the measured end's
# node, as in the other *-instructions.sh scripts, e.g. NODE_FLAGS=--perf-basic-prof for
# callgrind-jit.mjs to name the JIT code of the dump (the map is moved to <out>/perf.map, also
# when the run fails, so that no /tmp/perf-<pid>.map is left behind).
# SETTLE=<calls> (in the environment, default 0) makes one more round of that many calls between
# the warm-up and the measured round, after the same short pause the measured round follows: a
# keel caller's deadline timer, left idle by a pause, takes a branch on the next call that its
# optimized `#send` has never run (V8 deoptimizes it, `--trace-deopt`), and without a settling
# round the measured round pays that deoptimization and re-optimization (2026-12-02, ninth round).
#   bench/profile/nats-instructions.sh <tree> caller|callee keel|raw [calls=20000] [warm=60000]
flags=${NODE_FLAGS-$NODE_ARGS}
vpid= # the measured node's pid, once started (its perf map is moved by cleanup)
tree=$(cd "$1" && pwd); side=$2; mode=${3:-keel}; n=${4:-20000}; warm=${5:-60000}; inflight=${IN_FLIGHT:-64}
case "${SETTLE:-0}" in "" | *[!0-9]*) echo "SETTLE must be a whole number of calls (got: $SETTLE)" >&2; exit 2 ;; esac
case "$side/$mode" in caller/keel|caller/raw|callee/keel|callee/raw) ;; *) echo "usage: $0 <tree> caller|callee keel|raw [calls] [warm]" >&2; exit 2 ;; esac
out=$(mktemp -d /tmp/keel-nats-ir.XXXXXX)
port=$((20000 + RANDOM % 20000))
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats" -a 127.0.0.1 -p "$port" > /dev/null 2>&1 &
npid=$!
# Whatever ends the script (a failure, Ctrl-C, a timeout's SIGTERM): no nats-server or node left behind.
cleanup() {
  exec 3>&- 4>&- 2>/dev/null
  kill $lpid $cpid $npid 2>/dev/null
  [ -n "$vpid" ] && [ -f "/tmp/perf-$vpid.map" ] && mv "/tmp/perf-$vpid.map" "$out/perf.map"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sleep 0.5
kill -0 "$npid" 2>/dev/null || { echo "nats-server did not start on port $port" >&2; exit 1; }
url="nats://127.0.0.1:$port"
if [ "$mode" = keel ]; then callee=(nats-callee.mjs "$url" keel); else callee=(nats-raw-callee.mjs "$url" raw); fi
caller=(nats-ir-caller.mjs "$url" "$mode" "$inflight")
vg=(valgrind --tool=callgrind --smc-check=all-non-file --separate-threads=yes --callgrind-out-file="$out/cg")
waitfor() { # file, word, number of lines
  for _ in $(seq 1 3000); do
    [ "$(grep -c "$2" "$1" 2>/dev/null)" -ge "$3" ] && return
    for pid in $cpid $lpid; do kill -0 "$pid" 2>/dev/null || { echo "process $pid ended before $2 in $1" >&2; exit 1; }; done
    sleep 0.2
  done
  echo "timed out waiting for $2 in $1" >&2
  exit 1
}
mkfifo "$out/caller.in" "$out/callee.in"
if [ "$side" = callee ]; then
  "${vg[@]}" node $flags "$tree/bench/profile/${callee[0]}" "${callee[@]:1}" < "$out/callee.in" > "$out/callee.out" 2> "$out/vg" &
else
  node "$tree/bench/profile/${callee[0]}" "${callee[@]:1}" < "$out/callee.in" > "$out/callee.out" 2>&1 &
fi
cpid=$!
[ "$side" = callee ] && vpid=$cpid
exec 4>"$out/callee.in"
waitfor "$out/callee.out" ready 1
if [ "$side" = caller ]; then
  "${vg[@]}" node $flags "$tree/bench/profile/${caller[0]}" "${caller[@]:1}" < "$out/caller.in" > "$out/caller.out" 2> "$out/vg" &
  vpid=$!
else
  node "$tree/bench/profile/${caller[0]}" "${caller[@]:1}" < "$out/caller.in" > "$out/caller.out" 2> "$out/caller.err" &
  vpid=$cpid
fi
lpid=$!
exec 3>"$out/caller.in"
waitfor "$out/caller.out" ready 1
echo "$warm" >&3; waitfor "$out/caller.out" done 1
rounds=1
if [ "${SETTLE:-0}" -gt 0 ]; then
  callgrind_control -z "$vpid" > /dev/null 2>&1
  rounds=2
  echo "$SETTLE" >&3; waitfor "$out/caller.out" done $rounds
fi
callgrind_control -z "$vpid" > /dev/null 2>&1
echo "$n" >&3; waitfor "$out/caller.out" done $((rounds + 1))
callgrind_control -d measured "$vpid" > /dev/null 2>&1
sleep 2
exec 3>&-
wait "$lpid"
exec 4>&-
wait "$cpid"
kill "$npid"
total=0
for dump in "$out"/cg.1-*; do total=$((total + $(grep -m1 '^summary:' "$dump" | awk '{print $2}'))); done
main=$(grep -m1 '^summary:' "$out/cg.1-01" | awk '{print $2}')
threads=$(ls "$out"/cg.1-* | wc -l)
echo "$(basename "$tree") $side $mode: $n calls after $warm${SETTLE:++$SETTLE} at $inflight in flight: all threads $total ($((total / n)) per call), main thread $main ($((main / n)) per call), $threads thread dumps; $out"
