#!/usr/bin/env bash
# DETR under mpirun in f64: dp 2, tp 2, dp 2 x tp 2 and dp 2 with ZeRO-1 and accumulation train the same steps as
# one process (losses to 1e-9), COCO evaluation split over dp gives one process's metrics, and a dp 2 checkpoint
# resumes on one process exactly.
set -uo pipefail
PARALLAX=$1
SRC=$2
source "$SRC/tests/common/cli_helpers.sh"
MPIRUN="mpirun --oversubscribe --allow-run-as-root --mca btl self,vader,tcp"

run "build-detection" 0 "$PARALLAX" data build-detection --fashion-mnist /usr/share/datasets/fashion-mnist \
  --out "$WORK/scenes" --shards 2 --canvas 64 --train-scenes 96 --valid-scenes 16 --test-scenes 0 \
  || { echo "$fails failure(s)"; exit 1; }

# Frozen batch norms (the reference's): trainable ones would normalise by each rank's own images. Dropout off: tp > 1
# draws the masks of sharded activations per tp rank. Every image stays 64 x 64 (flips only): each rank pads its
# images to its own largest, which moves the feature mask's nearest-neighbour sampling, so only batches of one size
# are the same function on every layout (as in the reference). One thread per rank: up to 4 ranks share 2 cores.
CONFIG="$WORK/detr.pbtxt"
cat >"$CONFIG" <<PBEOF
model { detr { backbone: "resnet18" backbone_width: 0.125 backbone_stages: 2 frozen_bn: true freeze_stem: false
               backbone_lr: 1e-3 d_model: 16 num_heads: 4 encoder_layers: 1 decoder_layers: 2 d_ff: 32
               dropout: 0.0 num_queries: 8 } }
data { dir: "$WORK/scenes"
       augment { scales: [64] max_size: 64 crop_resize_scales: [64] crop_min: 64 crop_max: 64 eval_size: 64 } }
optimizer { lr: 1e-3 beta2: 0.999 weight_decay: 1e-4 clip_grad_norm: 0.1 }
schedule { name: "constant" warmup_steps: 0 }
train { max_steps: 4 batch_size: 8 seed: 5 threads: 1 precision: "f64" }
eval { every_steps: 0 batch_size: 8 max_images: 16 }
log { every_steps: 1 }
checkpoint { every_steps: 2 }
PBEOF

# final_map RUN: the final evaluation's mAP and AP50 (eval.every_steps 0: once, at the end).
final_map() {
  $PY -c 'import json, sys; r = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if "valid_map" in l][-1]
print(r["step"], "%.9f %.9f" % (r["valid_map"], r["valid_ap50"]))' "$1"
}

S="$WORK/single"
run "train one process" 0 "$PARALLAX" train "$CONFIG" --run-dir "$S"
expect_in "one process progress" "step 4/4 | loss" "$OUT"
expect_in "throughput in images" "img/s" "$OUT"
expect_in "final evaluation" "valid mAP" "$OUT"
for layout in "2 1" "2 2" "4 2"; do
  set -- $layout
  np=$1 tp=$2
  R="$WORK/np${np}_tp${tp}"
  run "train np=$np tp=$tp" 0 $MPIRUN -np "$np" "$PARALLAX" train "$CONFIG" --run-dir "$R" --set parallel.tp=$tp
  expect_in "np=$np tp=$tp layout" "dp $((np / tp)) x tp $tp" "$OUT"
  compare_losses "np=$np tp=$tp vs one process" "$R" "$S" 1 4 1e-9
  [ "$(final_map "$R")" = "$(final_map "$S")" ] ||
    fail "np=$np tp=$tp: final COCO metrics $(final_map "$R") differ from one process's $(final_map "$S")"
done

# A dp 2 checkpoint (step 2) resumes on one process: steps 3 and 4 as the straight run's.
cp -r "$WORK/np2_tp1" "$WORK/resume"
rm -rf "$WORK/resume/checkpoints/step_4"
echo step_2 >"$WORK/resume/checkpoints/latest"
run "resume dp 2 -> one process" 0 "$PARALLAX" train --run-dir "$WORK/resume"
expect_in "resumed from step 2" "(step 2)" "$OUT"
compare_losses "resumed on one process" "$WORK/resume" "$S" 3 4 1e-9

# Two micro-batches per update on dp 2 with ZeRO-1: the box count and class weights span the whole update.
run "one process, 2 micro-batches" 0 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/acc_single" \
  --set train.accumulate_steps=2 --set train.max_steps=2
run "np=2 ZeRO-1, 2 micro-batches" 0 $MPIRUN -np 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/acc_dp2" \
  --set train.accumulate_steps=2 --set train.max_steps=2 --set optimizer.shard_state=true
compare_losses "accumulation on dp 2 vs one process" "$WORK/acc_dp2" "$WORK/acc_single" 1 2 1e-9

# A model config error is one line naming the field.
run "num_heads not dividing d_model" 2 "$PARALLAX" train "$CONFIG" --run-dir "$WORK/bad" --set model.detr.num_heads=3
expect_in "bad num_heads" "model.detr.num_heads: 3 does not divide model.detr.d_model 16" "$ERR"

[ "$fails" = 0 ] && echo "all passed" || { echo "$fails failure(s)"; exit 1; }
