#!/usr/bin/env bash
# DETR's commands end to end on a small Fashion-MNIST scenes dataset and a tiny model: train, resume, config
# errors naming the field, `eval --split test` (COCO table, metrics.jsonl keys, the translator's options refused),
# and `detect` on scenes and PNGs of every kind: JSON and annotated PNGs, one line per bad image, exit codes.
set -uo pipefail
PARALLAX=$1
SRC=$2
source "$SRC/tests/common/cli_helpers.sh"

# px NAME EXPECTED_RC ARGS...: run (tests/common/cli_helpers.sh) of parallax ARGS.
px() { run "$1" "$2" "$PARALLAX" "${@:3}"; }
# one_error_line NAME KEYWORD: stderr is one "parallax: error:" line containing KEYWORD.
one_error_line() {
  if [ "$(printf '%s\n' "$ERR" | wc -l)" -ne 1 ] || [[ "$ERR" != "parallax: error: "* ]]; then
    fail "$1: stderr is not one 'parallax: error:' line"
    echo "$ERR" | head -5
  fi
  expect_in "$1" "$2" "$ERR"
}

px "build scenes" 0 data build-detection --fashion-mnist /usr/share/datasets/fashion-mnist --out "$WORK/scenes" \
  --shards 1 --train-scenes 64 --valid-scenes 16 --test-scenes 16 || { echo "$fails failure(s)"; exit 1; }

# Two backbone stages (a 16x16 feature map of the 128-pixel scenes): one stage's 32x32 map made each step 10x
# slower. One thread: two threads of a model this small wait on each other on a loaded machine.
CONFIG="$WORK/detr.pbtxt"
cat >"$CONFIG" <<EOF
model { detr { backbone: "resnet18" backbone_width: 0.125 backbone_stages: 2 frozen_bn: false freeze_stem: false
        backbone_lr: 1e-4 d_model: 32 num_heads: 2 encoder_layers: 1 decoder_layers: 1 d_ff: 64 dropout: 0.0
        num_queries: 10 } }
data { dir: "$WORK/scenes" }
optimizer { lr: 1e-3 weight_decay: 1e-4 clip_grad_norm: 0.1 }
schedule { name: "constant" warmup_steps: 0 }
train { max_steps: 4 batch_size: 8 seed: 3 threads: 1 }
eval { every_steps: 0 batch_size: 8 }
log { every_steps: 1 }
checkpoint { every_steps: 2 keep_last: 2 }
EOF

# --- 1. train, resume; config errors name the field and leave no run dir. -----------------------------------------
R="$WORK/run"
px "train 4 steps" 0 train "$CONFIG" --run-dir "$R"
expect_in "train" "step 4/4 | loss" "$OUT"
expect_in "train" "valid mAP" "$OUT"
px "resume to 6" 0 train --run-dir "$R" --set train.max_steps=6
expect_in "resume" "(step 4)" "$OUT"
expect_in "resume" "step 5/6 | loss" "$OUT"
[ "$(cat "$R/checkpoints/latest" 2>/dev/null)" = "step_6" ] || fail "resume: checkpoints/latest is not step_6"
for bad in "model.detr.num_heads=3" "data.augment.eval_size=0" "model.detr.backbone_stages=5"; do
  px "config error $bad" 2 train "$CONFIG" --run-dir "$WORK/run_bad" --set "$bad"
  one_error_line "config error $bad" "${bad%%=*}"
  [ -e "$WORK/run_bad" ] && fail "config error $bad: wrote $WORK/run_bad"
done

# --- 2. eval: pycocotools' table, the summary line, 12 metrics appended; the translator's options refused. ----------
px "eval test" 0 eval --run-dir "$R" --split test
expect_in "eval test" " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = " "$OUT"
expect_in "eval test" " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = " "$OUT"
[ "$(grep -c "^ Average" <<<"$OUT")" -eq 12 ] || fail "eval test: not 12 COCO lines"
expect_in "eval test" "test @ step 6: mAP " "$OUT"
expect_in "eval test" "| 16 images |" "$OUT"
$PY - "$R/metrics.jsonl" <<'PYEOF' || fail "eval: metrics.jsonl record"
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
keys = ["map", "ap50", "ap75", "aps", "apm", "apl", "ar1", "ar10", "ar100", "ars", "arm", "arl"]
assert list(last) == ["step"] + ["test_" + k for k in keys], list(last)
assert last["step"] == 6, last
assert all(v == -1 or 0 <= v <= 1 for k, v in last.items() if k != "step"), last
PYEOF
px "eval --max-images 4" 0 eval --run-dir "$R" --split valid --max-images 4
expect_in "eval --max-images" "valid @ step 6: mAP " "$OUT"
expect_in "eval --max-images" "| 4 images |" "$OUT"
tail -1 "$R/metrics.jsonl" | grep -q '"valid_map"' || fail "eval --split valid: no valid_map record"
for option in "--beam 2" "--show 1" "--output $WORK/hyp.txt" "--max-sentences 3"; do
  before=$(md5sum <"$R/metrics.jsonl")
  # shellcheck disable=SC2086  # the option and its value are two words
  px "eval $option on DETR" 2 eval --run-dir "$R" $option
  one_error_line "eval $option on DETR" "${option%% *}: a translator option"
  [ "$before" = "$(md5sum <"$R/metrics.jsonl")" ] || fail "eval $option on DETR: metrics.jsonl changed"
done
px "eval on a missing split" 2 eval --run-dir "$R" --split nosuch
one_error_line "eval on a missing split" "nosuch"

# --- 3. detect: scenes and PNGs of every kind, JSON and annotated PNGs, bad images one line each. --------------------
px "scene PNGs" 0 data inspect "$WORK/scenes" --examples 2 --no-boxes --png-dir "$WORK/img"
$PY "$SRC/tests/common/detect_images.py" "$WORK/img" || fail "detect_images.py"
mkdir "$WORK/img/bad_directory.png"
mkfifo "$WORK/img/bad_fifo.png"  # opening it would block: refused unopened
VOC=/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc/JPEGImages/2011_000003.jpg
if [ -f "$VOC" ]; then
  cp "$VOC" "$WORK/img/good_photo.jpg"
  head -c 4000 "$VOC" >"$WORK/img/bad_truncated.jpg"
fi
GOOD=("$WORK"/img/test_*.png "$WORK"/img/good_*)
BAD=("$WORK"/img/bad_* "$WORK/img/bad_missing.png")
px "detect good and bad" 2 detect --run-dir "$R" --threshold 0 "${GOOD[@]}" "${BAD[@]}"
for image in "${BAD[@]}"; do
  [ "$(grep -cF "'$image'" <<<"$ERR")" -eq 1 ] || fail "detect: not one line naming $image"
done
[ "$(wc -l <<<"$ERR")" -eq "${#BAD[@]}" ] || fail "detect: $(wc -l <<<"$ERR") stderr lines for ${#BAD[@]} bad images"
grep -v "^parallax: error: image file '" <<<"$ERR" && fail "detect: stderr lines of another form"
for image in "${GOOD[@]}"; do
  expect_in "detect stdout" "$image: 10 objects (" "$OUT"  # threshold 0: every query
done
expect_in "detect stdout" "${#GOOD[@]} of $((${#GOOD[@]} + ${#BAD[@]})) images -> $R/detect" "$OUT"
$PY - "$R/detect" "$WORK/scenes/dataset.pbtxt" "${GOOD[@]}" <<'PYEOF' || fail "detect: JSON and PNG outputs"
import json, os, re, struct, sys
out, index, images = sys.argv[1], sys.argv[2], sys.argv[3:]
names = re.findall(r'category_names: "([^"]*)"', open(index).read())
def png_size(path):
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])
for image in images:
    stem = os.path.splitext(os.path.basename(image))[0]
    record = json.load(open(f"{out}/{stem}.json"))
    assert list(record) == ["image", "width", "height", "step", "threshold", "detections"], list(record)
    assert record["image"] == image and record["step"] == 6, record
    assert png_size(f"{out}/{stem}.png") == (record["width"], record["height"]), stem
    if image.endswith(".png"):  # the input's own size
        assert png_size(image) == (record["width"], record["height"]), stem
    assert len(record["detections"]) == 10, stem
    scores = [d["score"] for d in record["detections"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores), scores
    for d in record["detections"]:
        assert names[d["label_id"]] == d["label"], d
        assert len(d["box"]) == 4 and d["box"][0] <= d["box"][2] and d["box"][1] <= d["box"][3], d
assert not [f for f in os.listdir(out) if f.startswith("bad_")], os.listdir(out)
PYEOF

# Same encoder, same pixels: with boxes drawn the annotated copy differs from the scene, with none it is the scene.
cmp -s "$WORK/img/test_0.png" "$R/detect/test_0.png" && fail "detect: test_0.png has no box drawn"

# One image per forward: an image's detections do not depend on the others of the call. Same stem twice: _2.
px "detect one scene" 0 detect --run-dir "$R" --threshold 0 --out "$WORK/one" "$WORK/img/test_1.png"
$PY - "$R/detect/test_1.json" "$WORK/one/test_1.json" <<'PYEOF' || fail "detect: one image alone differs"
import json, sys
a, b = (json.load(open(p))["detections"] for p in sys.argv[1:])
assert a == b, (a[:2], b[:2])
PYEOF
cp "$WORK/img/test_0.png" "$WORK/test_0.png"
px "detect same stem" 0 detect --run-dir "$R" --out "$WORK/one" "$WORK/img/test_0.png" "$WORK/test_0.png" \
  --threshold 1
[ -s "$WORK/one/test_0.json" ] && [ -s "$WORK/one/test_0_2.json" ] && [ -s "$WORK/one/test_0_2.png" ] ||
  fail "detect: the second test_0 did not get test_0_2.*"
expect_in "detect --threshold 1" "test_0.png: 0 objects" "$OUT"
cmp -s "$WORK/img/test_0.png" "$WORK/one/test_0.png" || fail "detect: without detections test_0.png was changed"
px "detect into its own input" 2 detect --run-dir "$R" --out "$WORK/one" "$WORK/one/test_1.png"
one_error_line "detect into its own input" "would replace it"
px "detect --out a file" 2 detect --run-dir "$R" --out "$CONFIG" "$WORK/img/test_0.png"
one_error_line "detect --out a file" "--out"
px "detect --threshold 2" 2 detect --run-dir "$R" --threshold 2 "$WORK/img/test_0.png"
px "detect without a run" 2 detect --run-dir "$WORK/no_run" "$WORK/img/test_0.png"
one_error_line "detect without a run" "not a run directory"

# --- 4. a translator run: eval refuses DETR's option, detect refuses the run. -----------------------------------------
$PY "$SRC/tests/common/digit_corpus.py" "$WORK" 12345 200 10 10
px "build-translation" 0 data build-translation --src "$WORK/train.en" --tgt "$WORK/train.es" \
  --valid-src "$WORK/valid.en" --valid-tgt "$WORK/valid.es" --test-src "$WORK/test.en" --test-tgt "$WORK/test.es" \
  --out "$WORK/text" --shards 1 --vocab-size 300
cat >"$WORK/translator.pbtxt" <<EOF
model { translator { d_model: 16 num_heads: 2 encoder_layers: 1 decoder_layers: 1 d_ff: 32 max_positions: 32 } }
data { dir: "$WORK/text" max_length: 32 }
train { max_steps: 1 batch_tokens: 300 threads: 1 }
eval { every_steps: 0 max_sentences: 2 }
EOF
T="$WORK/translator_run"
px "train a translator" 0 train "$WORK/translator.pbtxt" --run-dir "$T"
px "eval --max-images on a translator" 2 eval --run-dir "$T" --max-images 3
one_error_line "eval --max-images on a translator" "--max-images: a DETR option; $T is a translator run"
px "detect on a translator" 2 detect --run-dir "$T" "$WORK/img/test_0.png"
one_error_line "detect on a translator" "$T is a translator run; detect needs a DETR run"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
