#!/bin/bash
# Instructions per in-process call, counted by valgrind (callgrind): steady on a busy machine,
# where times are not. Runs bench/profile/in-process-ir-side.mjs of <tree> (built: `npm run build`
# there) under callgrind, zeroes the counters after its warm-up, counts <calls> calls (sequential
# unless IN_FLIGHT says otherwise) to the sync (or HANDLER=async) `quote` handler, and prints the count per call (every thread: GC and compiler too).
# `moleculer`: Moleculer's local `broker.call` to the same handler, as the peers bench makes it.
# POLICIES=off in the environment: a kernel with every call policy off (retry, breaker, bulkhead), or
# POLICIES='<kernel options as JSON>' (e.g. '{"circuitBreaker":false}'); NODE_FLAGS: more node flags.
# Runs of one build spread widely: 4 243 to 6 409 instructions a call over four sync runs at top
# level (Node 24), two groups with NODE_FLAGS='--single-threaded --predictable-gc-schedule'
# (docs/performance.md, "Fifth round"), and async runs up to 6 788. For the async ones the cause
# was the pause before the counted calls, which let the deadline scheduler go idle and so
# deoptimized the call path inside the counted window; in-process-ir-side.mjs now holds one call
# open throughout (HANDLER=async) and warms again after an idle second (docs/performance.md,
# "Fourteenth round"). Async counts still spread by about 8 % either way with the JIT's timing,
# sync ones by under 2 % in that round: compare several runs of each build, alternating.
# HANDLER=async, IN_FLIGHT=64, TRACING=1, PARENT=unsampled: as in-process-ir-side.mjs says.
#   bench/profile/in-process-instructions.sh <tree> top|context|moleculer [calls=20000]
tree=$(cd "$1" && pwd); mode=${2:-top}; n=${3:-20000}
source "$(dirname "$0")/ir-common.sh"
out=$(mktemp -d /tmp/keel-inproc-ir.XXXXXX)/$mode
fifo=$out.fifo; mkfifo "$fifo"
valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out.cg" node $NODE_FLAGS "$tree/bench/profile/in-process-ir-side.mjs" "$tree" "$mode" "$n" < "$fifo" > "$out.stdout" 2> "$out.vg" &
vpid=$!
watched=("$vpid")
exec 3>"$fifo"
ir_wait "$out.stdout" warm
callgrind_control -z "$vpid" > /dev/null 2>&1
echo >&3
ir_wait "$out.stdout" done
callgrind_control -d measured "$vpid" > /dev/null 2>&1
sleep 2
echo >&3
exec 3>&-
wait "$vpid"
dump=$(ls "$out".cg.* | head -1)
total=$(ir_total "$dump") || exit 1
echo "$tree $mode: $n calls: $total instructions, $((total / n)) per call; dump: $dump"
