#!/bin/bash
# Instructions per keel call (the HTTP gateway's call, with its metrics observing), counted by
# valgrind (callgrind): runs bench/profile/call-loop.mjs of <tree> (built: `npm run build` there),
# which makes <warm> calls, then zeroes the counters, makes <calls> more and dumps. No sockets, no
# fastify: the kernel's share of a gateway request alone, where http-instructions.sh's count of a
# whole request swings by several thousand instructions on a loaded machine. Node runs with
# NODE_FLAGS (default `--single-threaded --predictable-gc-schedule`: no background compiler or GC
# threads; five runs of one build agreed within about ±500 instructions per call on 2026-12-01,
# but in-process-instructions.sh with the same flags fell in two groups 3 000 apart: compare
# several runs of each build, alternating).
#   bench/profile/call-instructions.sh <tree> [warm=20000] [calls=40000]
tree=$(cd "$1" && pwd); warm=${2:-20000}; n=${3:-40000}
flags=${NODE_FLAGS---single-threaded --predictable-gc-schedule}
source "$(dirname "$0")/ir-common.sh"
out=$(mktemp -d /tmp/keel-call-ir.XXXXXX); mkfifo "$out/fifo"
# shellcheck disable=SC2086
valgrind --tool=callgrind --separate-threads=yes --smc-check=all-non-file --callgrind-out-file="$out/cg" node $flags "$tree/bench/profile/call-loop.mjs" "$warm" "$n" < "$out/fifo" > "$out/stdout" 2> "$out/vg" &
vpid=$!
watched=("$vpid")
exec 3>"$out/fifo"
ir_wait "$out/stdout" ready
callgrind_control -z "$vpid" > /dev/null 2>&1
echo go >&3
ir_wait "$out/stdout" done
callgrind_control -d measured "$vpid" > /dev/null 2>&1
sleep 1
echo end >&3
exec 3>&-
wait "$vpid"
all=$(cat "$out"/cg.*[0-9]-[0-9]* | grep '^summary:' | awk '{s+=$2} END {print s}')
main=$(ir_total "$out/cg.1-01") || exit 1
echo "$tree: $n calls after $warm: $((all / n)) instructions per call, main thread $((main / n)) (node $flags); dumps: $out"
