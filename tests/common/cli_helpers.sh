# What the command-line tests (tests/**/*_test.sh) share, sourced after `set -uo pipefail`: a work dir removed on
# exit (with a background job in $BG_PID killed), the failure counter, running a command, and the output checks.
WORK=$(mktemp -d)
BG_PID=""
cleanup() {
  if [ -n "$BG_PID" ]; then kill -KILL "$BG_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
PY=/usr/bin/python3
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
expect_in() {  # expect_in NAME TEXT TEXT_TO_SEARCH
  grep -qF -- "$2" <<<"$3" || { fail "$1: output lacks '$2'"; echo "$3" | head -12; }
}
# run NAME EXPECTED_RC COMMAND...: stdout in $OUT, stderr in $ERR, stdin the caller's; EXPECTED_RC may be
# `nonzero`. A hang fails instead of blocking ctest.
run() {
  local name=$1 want=$2
  shift 2
  timeout -k 10 300 "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  local rc=$?
  OUT=$(cat "$WORK/stdout")
  ERR=$(cat "$WORK/stderr")
  if { [ "$want" = nonzero ] && [ "$rc" -eq 0 ]; } || { [ "$want" != nonzero ] && [ "$rc" -ne "$want" ]; }; then
    fail "$name: exit $rc, expected $want"
    echo "$OUT" | tail -8
    echo "$ERR" | tail -8
    return 1
  fi
  echo "ok   $name"
}

# compare_losses NAME RUN_A RUN_B FIRST LAST [RTOL]: the step losses of two runs' metrics.jsonl agree to RTOL (default
# 1e-4 relative: f32 rounding of different summation orders), and each run logged every step from FIRST to LAST.
compare_losses() {
  $PY - "$2" "$3" "$4" "$5" "${6:-1e-4}" <<'PYEOF' || fail "$1: losses differ"
import json, sys
def losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r}
a, b, first, last = losses(sys.argv[1]), losses(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rtol = float(sys.argv[5])
for step in range(first, last + 1):
    assert step in a and step in b, (step, sorted(a), sorted(b))
    assert abs(a[step] - b[step]) <= rtol * abs(b[step]), (step, a[step], b[step])
print("losses agree:", {s: (round(a[s], 5), round(b[s], 5)) for s in range(first, last + 1)})
PYEOF
}
