#!/usr/bin/env bash
# `parallax train` under mpirun: dp x tp runs match one process, a checkpoint resumes on another layout,
# SIGTERM/SIGUSR1 stop every rank at the same step with a checkpoint, a bad layout is a one-line error on
# every rank, and a stalled rank makes the others fail with a message naming it instead of hanging.
set -uo pipefail
PARALLAX=$1
SRC=$2
source "$SRC/tests/common/cli_helpers.sh"
MPIRUN="mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp"

# --- A synthetic corpus (English -> Spanish digit words) and a 1+1-layer model with 4 heads. -----------------
$PY "$SRC/tests/common/digit_corpus.py" "$WORK" 4242 400 16 16
# Vocabulary 296 (byte_fallback's 256 pieces + words; this corpus has room for 299): divisible by tp = 2, 4, 8.
run "build-translation" 0 "$PARALLAX" data build-translation --src "$WORK/train.en" --tgt "$WORK/train.es" \
  --valid-src "$WORK/valid.en" --valid-tgt "$WORK/valid.es" --test-src "$WORK/test.en" --test-tgt "$WORK/test.es" \
  --out "$WORK/data" --shards 2 --vocab-size 296 || { echo "$fails failure(s)"; exit 1; }

# The model fields are written directly under `model`, the layout before `model { translator { ... } }`: it
# must keep working. Dropout off: tp > 1 draws the masks of sharded activations per tp rank, so only without dropout do layouts
# compute the same function. One thread per rank: up to 4 ranks share 2 cores.
CONFIG="$WORK/tiny.pbtxt"
cat >"$CONFIG" <<PBEOF
model { d_model: 32 num_heads: 4 encoder_layers: 1 decoder_layers: 1 d_ff: 64 dropout: 0.0 pre_norm: true
        max_positions: 32 }
data { dir: "$WORK/data" max_length: 32 }
optimizer { lr: 3e-3 clip_grad_norm: 1.0 }
schedule { name: "inverse_sqrt" warmup_steps: 10 }
train { max_steps: 6 batch_tokens: 400 seed: 3 threads: 1 }
eval { every_steps: 0 beam: 2 max_sentences: 8 batch_tokens: 512 }
log { every_steps: 1 }
checkpoint { every_steps: 3 keep_last: 3 }
parallel { bucket_mb: 0.01 }
PBEOF

# --- 1. one process, dp=2, tp=2, and dp=2 x tp=2 compute the same 6 steps. ---------------------------------
S="$WORK/single"
run "train single process" 0 "$PARALLAX" train "$CONFIG" --run-dir "$S"
for layout in "2 1" "2 2" "4 2"; do
  set -- $layout
  np=$1 tp=$2
  R="$WORK/np${np}_tp${tp}"
  run "train np=$np tp=$tp" 0 $MPIRUN -np "$np" "$PARALLAX" train "$CONFIG" --run-dir "$R" --set parallel.tp=$tp
  expect_in "np=$np tp=$tp progress" "step 6/6 | loss" "$OUT"
  expect_in "np=$np tp=$tp layout line" "dp $((np / tp)) x tp $tp" "$OUT"
  [ "$(grep -c 'step 6/6' <<<"$OUT")" = 1 ] || fail "np=$np tp=$tp: progress printed by more than rank 0"
  # This config writes the translator's fields directly under `model` (the old layout): one notice, by rank 0.
  [ "$(grep -c 'deprecated' <<<"$ERR")" = 1 ] || fail "np=$np tp=$tp: not one deprecation line: $ERR"
  for r in $(seq 0 $((np - 1))); do
    ls "$R"/logs/rank$r.* >/dev/null 2>&1 || fail "np=$np tp=$tp: no logs/rank$r.*"
  done
  compare_losses "np=$np tp=$tp vs one process" "$R" "$S" 1 6
  # The final evaluation is split over the dp replicas and summed: the same valid loss as one process.
  $PY - "$R" "$S" <<'PYEOF' || fail "np=$np tp=$tp: the final valid loss/BLEU differ from one process's"
import json, sys
def final_eval(run):
    return [r for r in map(json.loads, open(run + "/metrics.jsonl")) if "valid_loss" in r][-1]
a, b = final_eval(sys.argv[1]), final_eval(sys.argv[2])
assert a["step"] == b["step"] == 6, (a, b)
assert abs(a["valid_loss"] - b["valid_loss"]) <= 1e-4 * b["valid_loss"], (a, b)
assert abs(a["valid_bleu"] - b["valid_bleu"]) <= 1.0, (a, b)  # a flipped near-tie token moves BLEU a little
PYEOF
  seen=$(grep -o 'tokens_seen: [0-9]*' "$R/checkpoints/step_6/manifest.pbtxt")
  [ -n "$seen" ] && [ "$seen" = "$(grep -o 'tokens_seen: [0-9]*' "$S/checkpoints/step_6/manifest.pbtxt")" ] ||
    fail "np=$np tp=$tp: $seen differs from one process's (every dp rank's tokens count)"
done

# --- 2. the dp2 x tp2 checkpoint resumes on one process (tp 1) and on tp 2 x dp 1; all match a straight run. --
run "train single to 9" 0 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/single9" --set train.max_steps=9
cp -r "$WORK/np4_tp2" "$WORK/resume_tp1"
run "resume dp2xtp2 -> one process" 0 "$PARALLAX" train --run-dir "$WORK/resume_tp1" --set train.max_steps=9 \
  --set parallel.tp=1
expect_in "resume tp1" "(step 6)" "$OUT"
compare_losses "resumed on one process" "$WORK/resume_tp1" "$WORK/single9" 7 9
cp -r "$WORK/np4_tp2" "$WORK/resume_tp2"
run "resume dp2xtp2 -> tp2" 0 $MPIRUN -np 2 "$PARALLAX" train --run-dir "$WORK/resume_tp2" --set train.max_steps=9 \
  --set parallel.tp=2
compare_losses "resumed on tp 2" "$WORK/resume_tp2" "$WORK/single9" 7 9
grep -q "tp: 2" "$WORK/np4_tp2/checkpoints/step_6/manifest.pbtxt" || fail "manifest lacks the saving layout (tp: 2)"
grep -q "world_size: 4" "$WORK/np4_tp2/checkpoints/step_6/manifest.pbtxt" || fail "manifest lacks world_size: 4"

# The dp2 x tp2 run's checkpoint serves `parallax eval` and `translate` in one process (checkpoints hold full tensors).
run "eval of the dp2 x tp2 run in one process" 0 "$PARALLAX" eval --run-dir "$WORK/np4_tp2" --split test --beam 2
expect_in "eval of a tp run" "BLEU = " "$OUT"
run "translate with the dp2 x tp2 run" 0 "$PARALLAX" translate --run-dir "$WORK/np4_tp2" --beam 2 <<<"one two three"
[ "$(wc -l <<<"$OUT")" = 1 ] || fail "translate with a tp run: expected one line, got: $OUT"

# --- 2a. ZeRO-1 (optimizer.shard_state): the same losses; its checkpoint (moments gathered over dp) resumes on
# dp 2 with ZeRO and on one process without it. -------------------------------------------------------------
Z="$WORK/zero_np4_tp2"
run "train np=4 tp=2 ZeRO-1" 0 $MPIRUN -np 4 "$PARALLAX" train "$CONFIG" --run-dir "$Z" --set parallel.tp=2 \
  --set optimizer.shard_state=true
expect_in "ZeRO-1 memory line" "MiB per rank (ZeRO-1 over dp 2" "$OUT"
compare_losses "ZeRO-1 np=4 tp=2 vs one process" "$Z" "$S" 1 6
cp -r "$Z" "$WORK/zero_resume_dp2"
run "resume ZeRO-1 dp2xtp2 -> ZeRO-1 dp 2" 0 $MPIRUN -np 2 "$PARALLAX" train --run-dir "$WORK/zero_resume_dp2" \
  --set train.max_steps=9 --set parallel.tp=1
compare_losses "ZeRO-1 resumed on dp 2" "$WORK/zero_resume_dp2" "$WORK/single9" 7 9
cp -r "$Z" "$WORK/zero_resume_single"
run "resume ZeRO-1 dp2xtp2 -> one process" 0 "$PARALLAX" train --run-dir "$WORK/zero_resume_single" \
  --set train.max_steps=9 --set parallel.tp=1
compare_losses "ZeRO-1 resumed on one process" "$WORK/zero_resume_single" "$WORK/single9" 7 9

# --- 2d. global batches of 1-3 sentences on dp 4: ranks with an empty slice still join every collective. ------
run "one process, tiny batches" 0 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/tiny_single" \
  --set train.batch_tokens=24 --set checkpoint.every_steps=0
run "np=4 dp 4 ZeRO-1, tiny batches" 0 $MPIRUN -np 4 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/tiny_dp4" \
  --set train.batch_tokens=24 --set checkpoint.every_steps=0 --set optimizer.shard_state=true
run "np=4 dp 2 x tp 2, tiny batches" 0 $MPIRUN -np 4 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/tiny_dp2tp2" \
  --set train.batch_tokens=24 --set checkpoint.every_steps=0 --set parallel.tp=2
compare_losses "empty slices on dp 4" "$WORK/tiny_dp4" "$WORK/tiny_single" 1 6
compare_losses "empty slices on dp 2 x tp 2" "$WORK/tiny_dp2tp2" "$WORK/tiny_single" 1 6

# --- 2c. gradient accumulation (train.accumulate_steps): dp 2 all-reduces once per update and matches one process.
run "one process, 2 micro-batches per update" 0 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/acc_single" \
  --set train.accumulate_steps=2 --set train.max_steps=4
run "np=2, 2 micro-batches per update" 0 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/acc_dp2" \
  --set train.accumulate_steps=2 --set train.max_steps=4
compare_losses "accumulation on dp 2 vs one process" "$WORK/acc_dp2" "$WORK/acc_single" 1 4
$PY - "$WORK/acc_single" "$S" <<'PYEOF' || fail "accumulate_steps=2 does not take two batches per update"
import json, sys
def losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r}
acc, plain = losses(sys.argv[1]), losses(sys.argv[2])
assert abs(acc[1] - plain[1]) > 1e-6, (acc[1], plain[1])  # step 1 averages batches 1 and 2, not batch 1 alone
PYEOF

# --- 2b. with dropout on, a tp 2 run resumed on the same layout is bit-exact (every rank's streams restored). --
run "np=2 tp=2 dropout, 6 straight" 0 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/drop_straight" \
  --set parallel.tp=2 --set model.dropout=0.2 --set model.attention_dropout=0.1
run "np=2 tp=2 dropout, 3" 0 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/drop_resumed" \
  --set parallel.tp=2 --set model.dropout=0.2 --set model.attention_dropout=0.1 --set train.max_steps=3
run "np=2 tp=2 dropout, resume to 6" 0 $MPIRUN -np 2 "$PARALLAX" train --run-dir "$WORK/drop_resumed" \
  --set train.max_steps=6
$PY - "$WORK/drop_resumed" "$WORK/drop_straight" <<'PYEOF' || fail "tp 2 resume with dropout is not bit-exact"
import json, sys
def losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == sorted(b) == list(range(1, 7)), (sorted(a), sorted(b))
assert all(a[s] == b[s] for s in range(1, 7)), (a, b)
PYEOF

# --- 3. bad layouts: every rank fails at set-up, one line naming parallel.tp is printed; nothing hangs. --------
run "tp does not divide the world" nonzero $MPIRUN -np 3 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/bad1" \
  --set parallel.tp=2
expect_in "tp vs world" "parallel.tp: 2 does not divide the world size 3" "$ERR"
[ "$(grep -c 'parallax: error: parallel.tp: 2 does not divide the world size 3' <<<"$ERR")" = 1 ] ||
  fail "tp vs world: the same set-up error is printed more than once: $(grep -c 'parallax: error' <<<"$ERR") lines"
[ -e "$WORK/bad1" ] && fail "bad layout: the run dir was created"
run "tp does not divide the heads" nonzero $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/bad2" \
  --set parallel.tp=8
expect_in "tp vs heads" "parallel.tp: 8 does not divide model.translator.num_heads 4" "$ERR"

# --- 4. SIGTERM and SIGUSR1 to one rank: all ranks stop after the same step, save it, exit 0. ----------------
for sig in TERM USR1; do
  R="$WORK/sig_$sig"
  timeout -k 10 300 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$R" --set train.max_steps=100000 \
    --set checkpoint.every_steps=0 >"$WORK/sig.out" 2>&1 &
  BG_PID=$!
  for _ in $(seq 1 600); do  # until step 2 is logged
    grep -qs '"step": 2' "$R/metrics.jsonl" 2>/dev/null && break
    grep -qs '"step":2' "$R/metrics.jsonl" 2>/dev/null && break
    sleep 0.2
  done
  rank1=$(pgrep -f -n "parallax train .*--run-dir $R")
  kill -$sig "$rank1"
  wait "$BG_PID"
  rc=$?
  BG_PID=""
  [ "$rc" = 0 ] || { fail "SIG$sig: exit $rc"; tail -5 "$WORK/sig.out"; }
  expect_in "SIG$sig" "stopped by SIG$sig" "$(cat "$WORK/sig.out")"
  latest=$(cat "$R/checkpoints/latest" 2>/dev/null)
  [ -n "$latest" ] && [ -s "$R/checkpoints/$latest/tensors.h5" ] || fail "SIG$sig: no checkpoint"
  echo "ok   SIG$sig stops both ranks at $latest"
done

# --- 5. a stalled rank: the other fails within the deadline naming the group, the op and the rank. ----------
R="$WORK/stall"
start=$(date +%s)
timeout -k 10 120 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$R" --set train.max_steps=100000 \
  --set parallel.timeout_minutes=0.05 >"$WORK/stall.out" 2>&1 &
BG_PID=$!
for _ in $(seq 1 600); do
  grep -qs '"step"' "$R/metrics.jsonl" 2>/dev/null && break
  sleep 0.2
done
victim=$(pgrep -f -n "parallax train .*--run-dir $R")
kill -STOP "$victim"
wait "$BG_PID"
rc=$?
BG_PID=""
elapsed=$(($(date +%s) - start))
[ "$rc" != 0 ] || fail "stalled rank: exit 0"
[ "$rc" != 124 ] || fail "stalled rank: the job hung until timeout(1) killed it"
kill -KILL "$victim" 2>/dev/null
STALL=$(cat "$WORK/stall.out")
expect_in "stalled rank" "parallax: error: rank" "$STALL"
expect_in "stalled rank" "did not complete within" "$STALL"
grep -qE "rank [01] (did not answer|has not arrived)" <<<"$STALL" || { fail "stalled rank: no rank named"; echo "$STALL" | tail -5; }
echo "ok   stalled rank reported after ${elapsed}s"

# --- GPU (only where nvidia-smi lists one): ranks sharing one GPU through MPI's staging (parallel.gpu_collectives
# mpi) compute what one GPU process computes; NCCL refuses more ranks than GPUs in one line; with 2 GPUs, NCCL. ---
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${GPUS:-0}" -ge 1 ]; then
  GPU_SET=(--set train.device=cuda --set train.precision=f32 --set checkpoint.every_steps=0)
  G1="$WORK/gpu_single"
  run "gpu single process" 0 "$PARALLAX" train "$CONFIG" --run-dir "$G1" "${GPU_SET[@]}"
  expect_in "gpu single process" "device cuda:0" "$OUT"
  # Staged through MPI on any number of GPUs (ranks may share one); over NCCL with a GPU per rank.
  for collectives in mpi nccl; do
    [ "$collectives" = nccl ] && [ "$GPUS" -lt 2 ] && continue
    for layout in "2 1" "2 2"; do
      set -- $layout
      np=$1 tp=$2
      name="gpu $collectives np=$np tp=$tp"
      R="$WORK/gpu_${collectives}_np${np}_tp${tp}"
      run "$name" 0 $MPIRUN -np "$np" "$PARALLAX" train "$CONFIG" --run-dir "$R" "${GPU_SET[@]}" \
        --set parallel.gpu_collectives=$collectives --set parallel.tp=$tp
      if [ "$collectives" = mpi ]; then
        expect_in "$name" "GPU collectives staged through MPI" "$OUT"
        [ "$GPUS" -ge "$np" ] || expect_in "$name" "$np ranks on this node share $GPUS GPU(s)" "$OUT"
      else
        expect_in "$name" "GPU collectives over NCCL" "$OUT"
      fi
      compare_losses "$name vs one GPU" "$R" "$G1" 1 6 2e-3
    done
  done
  if [ "$GPUS" -lt 2 ]; then
    run "gpu nccl on one GPU" 2 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/gpu_nccl_refused" \
      "${GPU_SET[@]}" --set parallel.gpu_collectives=nccl
    expect_in "gpu nccl on one GPU" "train.device: 2 ranks on this node but 1 visible GPU(s)" "$ERR"
  fi
else
  echo "skip GPU runs: no GPU (nvidia-smi lists none)"
fi

if [ "$fails" -ne 0 ]; then
  echo "$fails failure(s)"
  exit 1
fi
echo "all parallel CLI checks passed"
