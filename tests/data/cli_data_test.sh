#!/usr/bin/env bash
# `parallax data ...` from the command line: exit codes and one-line errors for bad input, a build /
# inspect / verify cycle on small text and on labelme's VOC photos, and verify naming a corrupted shard.
set -uo pipefail
PARALLAX=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fails=0
check() {  # check NAME EXPECTED_RC CMD...: runs CMD, compares its exit code, keeps its output in $OUT
  local name=$1 want=$2
  shift 2
  OUT=$("$@" 2>&1)
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, expected $want"; echo "$OUT" | head -20; fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}
expect_in() {  # expect_in NAME TEXT: $OUT must contain TEXT
  if ! grep -qF -- "$2" <<<"$OUT"; then echo "FAIL $1: output lacks '$2'"; echo "$OUT" | head -20; fails=$((fails + 1)); fi
}

check "no subcommand" 2 "$PARALLAX" data
check "unknown option" 2 "$PARALLAX" data inspect "$WORK" --bogus
expect_in "unknown option" "parallax: error:"
check "missing index" 2 "$PARALLAX" data inspect "$WORK/none"
expect_in "missing index" "dataset.pbtxt"
[ "$(wc -l <<<"$OUT")" -eq 1 ] || { echo "FAIL missing index: not one line"; fails=$((fails + 1)); }
# Numeric ranges read as a person writes them (not CLI11's "Value 0 not in range 0.000000 to 1.79e308").
check "--shards 0" 2 "$PARALLAX" data build-detection --out "$WORK/none" --shards 0
expect_in "--shards 0" "parallax: error: --shards: must be >= 1, got 0"
check "--canvas 8" 2 "$PARALLAX" data build-detection --out "$WORK/none" --canvas 8
expect_in "--canvas 8" "--canvas: must be between 32 and 4096, got 8"
check "--shards abc" 2 "$PARALLAX" data build-detection --out "$WORK/none" --shards abc
expect_in "--shards abc" "--shards: must be an integer, got abc"

for i in $(seq 1 400); do
  echo "and the word $i was with god in the beginning number $((i % 17))" >>"$WORK/t.en"
  echo "y la palabra $i era con dios en el principio número $((i % 13))" >>"$WORK/t.es"
done
check "build-translation" 0 "$PARALLAX" data build-translation --src "$WORK/t.en" --tgt "$WORK/t.es" \
  --out "$WORK/tr" --shards 2 --vocab-size 400
check "inspect translation" 0 "$PARALLAX" data inspect "$WORK/tr" --examples 1
expect_in "inspect translation" "and the word 1 was with god in the beginning number 1"
expect_in "inspect translation" "=> y la palabra 1 era con dios en el principio número 1"
check "verify translation" 0 "$PARALLAX" data inspect "$WORK/tr" --verify
expect_in "verify translation" "verified"

# HDF5's file locks: a shard under another process's exclusive lock (flock(2), what HDF5 uses) fails to
# open with a one-line error; HDF5_USE_FILE_LOCKING=FALSE (filesystems without locks) is honoured.
held="$WORK/tr/train-00000-of-00002.h5"
exec 9<"$held"
flock -x 9
check "verify while another process locks a shard" 1 "$PARALLAX" data inspect "$WORK/tr" --verify
expect_in "verify while another process locks a shard" "train-00000-of-00002.h5"
check "verify without file locking" 0 env HDF5_USE_FILE_LOCKING=FALSE "$PARALLAX" data inspect "$WORK/tr" --verify
flock -u 9
exec 9<&-

shard="$WORK/tr/train-00001-of-00002.h5"
# Flip bytes inside the first chunk of tgt_tokens (located with h5py) so fletcher32 must catch it.
offset=$(/usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1],'r')['tgt_tokens'].id.get_chunk_info(0).byte_offset)" "$shard")
printf '\xff\xff\xff\xff' | dd of="$shard" bs=1 seek=$((offset + 16)) conv=notrunc status=none
check "verify corrupted" 1 "$PARALLAX" data inspect "$WORK/tr" --verify
expect_in "verify corrupted" "train-00001-of-00002.h5"
expect_in "verify corrupted" "tgt_tokens"

VOC=/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc
if [ -d "$VOC" ]; then
  check "build-detection voc" 0 "$PARALLAX" data build-detection --voc "$VOC" --out "$WORK/det" --shards 1 --max-size 256
  check "inspect detection" 0 "$PARALLAX" data inspect "$WORK/det" --examples 2
  expect_in "inspect detection" "person"
  [ -s "$WORK/det/inspect/train_0.png" ] || { echo "FAIL inspect detection: no PNG"; fails=$((fails + 1)); }
  check "verify detection" 0 "$PARALLAX" data inspect "$WORK/det" --verify
  check "two sources" 2 "$PARALLAX" data build-detection --voc "$VOC" --fashion-mnist "$VOC" --out "$WORK/x"
fi
echo "$fails failure(s)"
[ "$fails" -eq 0 ]
