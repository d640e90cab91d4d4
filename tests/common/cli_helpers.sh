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
