# Runs comm_timeout_probe on 3 ranks (scenario stall|exit) and checks that the job fails within 20 s with both
# surviving ranks naming group 'world', all_reduce #2 and rank 2. Usage: comm_timeout_check.sh SCENARIO PROBE MPIRUN...
set -u
scenario=$1 probe=$2
shift 2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start_ns=$(date +%s%N)
timeout 60 "$@" -np 3 "$probe" "$scenario" >"$log" 2>&1
code=$?
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
cat "$log"
fail() { echo "FAIL ($scenario): $1"; exit 1; }
[ "$code" -ne 0 ] || fail "mpirun exited 0"
[ "$code" -ne 124 ] || fail "the job hung (killed after 60 s)"
[ "$elapsed_ms" -lt 20000 ] || fail "the job took ${elapsed_ms} ms (limit 20 s)"
if [ "$scenario" = stall ]; then
  rank2="rank 2 has not arrived \(it is at #1\)"
else
  rank2="rank 2 (did not answer \(dead or stalled\)|has not arrived \(it is at #1\))"
fi
for rank in 0 1; do
  pattern="^probe rank $rank: group 'world' \(world ranks 0,1,2\): all_reduce #2 \(f32, 1048576 elements\) did not complete within 2 s: $rank2\$"
  grep -Eq "$pattern" "$log" || fail "no line matching: $pattern"
done
echo "PASS ($scenario): exit code $code after ${elapsed_ms} ms"
