# Shared by the *-instructions.sh scripts (sourced, not run): waiting for a measured process's
# stdout to say something, failing loudly when the process ended first or never said it, and
# leaving no valgrind, node or nats-server behind whatever ends the script (a failure, Ctrl-C, a
# timeout's SIGTERM). A script sets `watched` to the pids to check and to kill on exit.
watched=()
ir_cleanup() { exec 3>&- 4>&- 2>/dev/null; [ ${#watched[@]} -eq 0 ] || kill "${watched[@]}" 2>/dev/null; }
trap ir_cleanup EXIT
trap 'exit 130' INT TERM
# ir_wait <file> <word> [lines=1] [seconds=900]: until <file> holds <lines> lines with <word>.
ir_wait() {
  local file=$1 word=$2 lines=${3:-1} seconds=${4:-900} pid
  for _ in $(seq 1 $((seconds * 5))); do
    local seen
    seen=$(grep -c "$word" "$file" 2>/dev/null)
    [ "${seen:-0}" -ge "$lines" ] && return 0
    for pid in "${watched[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "process $pid ended before '$word' appeared in $file (see the files next to it)" >&2; exit 1; }
    done
    sleep 0.2
  done
  echo "timed out after ${seconds} s waiting for '$word' in $file" >&2
  exit 1
}
# ir_total <callgrind dump>: its instruction total, or exit with a message when the dump is missing
# or holds none (valgrind failed, or the process ended before its counters were dumped).
ir_total() {
  local total
  total=$(grep -m1 '^summary:' "$1" 2>/dev/null | awk '{print $2}')
  [ -n "$total" ] || { echo "no instruction count in $1 (see valgrind's log next to it)" >&2; exit 1; }
  echo "$total"
}
