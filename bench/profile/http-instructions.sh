#!/bin/bash
# Instructions per request of an HTTP server, counted by valgrind (callgrind): steady under a busy
# machine, where times are not. Starts bench/profile/http-server.mjs <mode> of <tree> (built:
# `npm run build` there) under callgrind, sends <warm> requests, zeroes the counters, sends
# <requests> more (autocannon, 16 connections), dumps, and prints the count per request.
# Counts user-space instructions of every thread (V8's background compiler and GC included), not
# the kernel's: the socket writes and reads are left out.
#   bench/profile/http-instructions.sh <tree> gateway|bare [warm=300] [requests=1000]
# NODE_FLAGS (in the environment) go to the measured node, e.g. NODE_FLAGS=--perf-basic-prof for
# callgrind-jit.mjs's reading by function.
# Under callgrind the server starts in minutes, not seconds.
tree=$(cd "$1" && pwd); mode=$2; warm=${3:-300}; n=${4:-1000}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/ir-common.sh"
out=$(mktemp -d /tmp/keel-http-ir.XXXXXX)/$mode
fifo=$out.fifo; mkfifo "$fifo"
valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out.cg" node $NODE_FLAGS "$tree/bench/profile/http-server.mjs" "$mode" < "$fifo" > "$out.stdout" 2> "$out.vg" &
vpid=$!
watched=("$vpid")
exec 3>"$fifo"
ir_wait "$out.stdout" ready
url=$(awk '/ready/{print $3}' "$out.stdout")
load() { node "$here/../../node_modules/autocannon/autocannon.js" -j -n -c 16 -a "$1" -m POST -H content-type=application/json -b '{"customerId":"c-1","lines":[{"sku":"KB-1","quantity":2}]}' "$url"; }
load "$warm" > "$out.warm" 2>/dev/null
callgrind_control -z "$vpid" > /dev/null 2>&1
load "$n" > "$out.ac" 2>/dev/null
callgrind_control -d measured "$vpid" > /dev/null 2>&1
sleep 2
exec 3>&-
wait "$vpid"
dump=$(ls "$out".cg.* | head -1)
total=$(ir_total "$dump") || exit 1
echo "$tree $mode: $n requests after $warm: $total instructions, $((total / n)) per request (non-2xx: $(node -e "console.log(JSON.parse(require('fs').readFileSync('$out.ac','utf8')).non2xx)")); dump: $dump"
