#!/bin/bash
# Instructions per event at one side of notification events over NATS, counted by valgrind
# (callgrind): steady on a busy machine, where times are not. Starts a nats-server, the measured
# side (events-ir-side.mjs of <tree>, built: `npm run build` there) under callgrind and, to measure
# the subscriber, a publisher without it; runs <warm> events, zeroes the counters, runs <events>
# more, dumps, and prints the count per event. User-space instructions of every thread (V8's
# compiler and GC threads included), not the kernel's (socket reads and writes are left out).
# To measure the subscriber, the publisher sends in bursts of 500 events 250 ms apart: read in like
# chunks from run to run (a subscriber left behind reads ever larger chunks, and counts vary).
#   bench/profile/events-instructions.sh <tree> publisher|subscriber [keel|raw] [warm=20000] [events=20000]
# NODE_FLAGS (in the environment) go to the measured node, e.g. NODE_FLAGS=--perf-basic-prof: its
# map of JIT code (/tmp/perf-<pid>.map) is then kept next to the dump, for callgrind-jit.mjs to
# name the dump's JIT addresses by JavaScript function.
tree=$(cd "$1" && pwd); side=$2; mode=${3:-keel}; warm=${4:-20000}; n=${5:-20000}
out=$(mktemp -d /tmp/keel-events-ir.XXXXXX)
source "$(dirname "$0")/ir-common.sh"
port=$((20000 + RANDOM % 20000))
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats" -a 127.0.0.1 -p "$port" > /dev/null 2>&1 &
npid=$!
watched=("$npid")
sleep 0.5
kill -0 "$npid" 2>/dev/null || { echo "nats-server did not start on port $port" >&2; exit 1; }
url="nats://127.0.0.1:$port"
mkfifo "$out/measured.in" "$out/other.in"
valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out/cg" node $NODE_FLAGS "$tree/bench/profile/events-ir-side.mjs" "$url" "$side" "$mode" < "$out/measured.in" > "$out/measured.out" 2> "$out/vg" &
vpid=$!
watched+=("$vpid")
exec 3>"$out/measured.in"
waitfor() { ir_wait "$1" "$2" "$3" 600; } # file, word, number of lines
waitfor "$out/measured.out" ready 1
if [ "$side" = subscriber ]; then
  node "$tree/bench/profile/events-ir-side.mjs" "$url" publisher "$mode" < "$out/other.in" > "$out/other.out" 2>&1 &
  watched+=($!)
  exec 4>"$out/other.in"
  waitfor "$out/other.out" ready 1
  round() { echo "$1" >&3; sleep 0.5; echo "$1 500 250" >&4; waitfor "$out/measured.out" done "$2"; }
else
  round() { echo "$1" >&3; waitfor "$out/measured.out" done "$2"; }
fi
round "$warm" 1
callgrind_control -z "$vpid" > /dev/null 2>&1
round "$n" 2
callgrind_control -d measured "$vpid" > /dev/null 2>&1
sleep 2
exec 3>&-
[ "$side" = subscriber ] && exec 4>&-
wait "$vpid"
kill "$npid"
[ -f "/tmp/perf-$vpid.map" ] && mv "/tmp/perf-$vpid.map" "$out/perf.map"
dump=$(ls "$out"/cg.* 2>/dev/null | head -1)
total=$(ir_total "$dump") || exit 1
echo "$tree $side $mode: $n events after $warm: $total instructions, $((total / n)) per event; dump: $dump"
