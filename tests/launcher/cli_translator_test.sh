#!/usr/bin/env bash
# `parallax train | eval | translate` end to end on a synthetic digit-words corpus and a 1+1-layer model:
# run-dir contents, bit-exact resume, SIGTERM, one-line errors that leave the run dir alone, eval, translate.
set -uo pipefail
PARALLAX=$1
SRC=$2
source "$SRC/tests/common/cli_helpers.sh"

# px NAME EXPECTED_RC ARGS...: run (tests/common/cli_helpers.sh) of parallax ARGS.
px() { run "$1" "$2" "$PARALLAX" "${@:3}"; }
# Every path with its type, size, inode and mtime, and a checksum of every file but the (large) checkpoint
# tensors, which a write would give a new mtime or inode: equal before and after means nothing was written.
snapshot() {
  if [ -e "$1" ]; then
    (cd "$1" && find . -printf '%p %y %s %i %T@\n' | sort &&
      find . -type f ! -name tensors.h5 -print0 | sort -z | xargs -0 -r md5sum)
  else
    echo "absent"
  fi
}

# --- A synthetic corpus: English digit words -> Spanish digit words, 3 to 7 words a line. ---------------
$PY "$SRC/tests/common/digit_corpus.py" "$WORK" 12345 400 30 30
# byte_fallback puts 256 byte pieces in every vocabulary: 300 leaves room for the words.
px "build-translation" 0 data build-translation --src "$WORK/train.en" --tgt "$WORK/train.es" \
  --valid-src "$WORK/valid.en" --valid-tgt "$WORK/valid.es" --test-src "$WORK/test.en" --test-tgt "$WORK/test.es" \
  --out "$WORK/data" --shards 2 --vocab-size 300 || { echo "$fails failure(s)"; exit 1; }

# max_positions 32 (data.max_length accordingly) so that translate has a line to cut; dropout on so that a
# resume must restore the dropout generator to be bit-exact. One thread: on a loaded machine (ctest -j, other
# jobs) two threads of this tiny model wait on each other and ran 10x slower.
write_config() {  # write_config FILE DATA_DIR [EXTRA MODEL FIELDS]
  cat >"$1" <<EOF
model { translator { d_model: 32 num_heads: 2 encoder_layers: 1 decoder_layers: 1 d_ff: 64 dropout: 0.1
        pre_norm: true max_positions: 32 ${3:-} } }
data { dir: "$2" max_length: 32 }
optimizer { lr: 3e-3 clip_grad_norm: 1.0 }
schedule { name: "inverse_sqrt" warmup_steps: 10 }
train { max_steps: 4 batch_tokens: 300 seed: 7 threads: 1 }
eval { every_steps: 3 beam: 2 max_sentences: 8 batch_tokens: 512 }
log { every_steps: 1 }
checkpoint { every_steps: 3 keep_last: 2 }
EOF
}
CONFIG="$WORK/tiny.pbtxt"
write_config "$CONFIG" "$WORK/data"

# --- 1. train N=4 steps: the run dir's files, metrics records, console progress. ----------------------------
A="$WORK/run_a"
px "train 4 steps" 0 train "$CONFIG" --run-dir "$A"
expect_in "train progress line" "step 1/4 | loss" "$OUT"
expect_in "train progress line" "step 4/4 | loss" "$OUT"
grep -q deprecated <<<"$ERR" && fail "train: a deprecation notice for a config in the current layout: $ERR"
expect_in "train eval line" "valid loss" "$OUT"
[ -f "$A/config.pbtxt" ] || fail "train: no config.pbtxt"
grep -q "d_model: 32" "$A/config.pbtxt" || fail "train: config.pbtxt lacks the model"
ls "$A"/logs/rank0.* >/dev/null 2>&1 || fail "train: no logs/rank0.* file"
grep -qs "parameters; config" "$A"/logs/rank0.* || fail "train: the glog file lacks the model line"
for step in 3 4; do
  for f in manifest.pbtxt tensors.h5; do
    [ -s "$A/checkpoints/step_$step/$f" ] || fail "train: no checkpoints/step_$step/$f"
  done
done
[ "$(cat "$A/checkpoints/latest" 2>/dev/null)" = "step_4" ] || fail "train: checkpoints/latest is not step_4"
$PY - "$A/metrics.jsonl" <<'EOF' || fail "train: metrics.jsonl"
import json, math, sys
records = [json.loads(line) for line in open(sys.argv[1])]
train = [r for r in records if "loss" in r]
evals = [r for r in records if "valid_loss" in r]
assert [r["step"] for r in train] == [1, 2, 3, 4], [r["step"] for r in train]
for r in train:
    for key in ("loss", "lr", "tokens_per_s", "step_time_s", "grad_norm"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
assert [r["step"] for r in evals] == [3, 4], evals
for r in evals:
    assert r["valid_loss"] > 0 and 0 <= r["valid_bleu"] <= 100, r
EOF

# --- 2. resume to 2N, bit for bit against a straight 2N run; nothing to do at max_steps. ---------------------
px "resume to 8" 0 train --run-dir "$A" --set train.max_steps=8
expect_in "resume" "(step 4)" "$OUT"
expect_in "resume" "step 5/8 | loss" "$OUT"
[ "$(cat "$A/checkpoints/latest" 2>/dev/null)" = "step_8" ] || fail "resume: checkpoints/latest is not step_8"
[ "$(cd "$A/checkpoints" && echo step_*)" = "step_6 step_8" ] || fail "resume: keep_last 2 kept $(ls "$A/checkpoints")"
B="$WORK/run_b"
px "train 8 straight" 0 train "$CONFIG" --run-dir "$B" --set train.max_steps=8
$PY - "$A" "$B" <<'EOF' || fail "resume is not bit-exact"
import json, re, sys
def losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r}
resumed, straight = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(resumed) == list(range(1, 9)) and sorted(straight) == list(range(1, 9)), (resumed, straight)
for step in range(5, 9):  # json round-trips doubles exactly: equal text means equal bits
    assert resumed[step] == straight[step], (step, resumed[step], straight[step])
def checksums(run):
    text = open(run + "/checkpoints/step_8/manifest.pbtxt").read()
    entries = re.findall(r'tensors \{[^}]*?name: "([^"]+)"[^}]*?crc32: "([^"]+)"[^}]*\}', text)
    return dict(entries)
a, b = checksums(sys.argv[1]), checksums(sys.argv[2])
assert any(k.startswith("model/") for k in a) and any(k.startswith("optim/") for k in a), sorted(a)[:5]
assert a == b, sorted(k for k in a if a[k] != b.get(k))
EOF
px "train at max_steps" 0 train --run-dir "$A"
expect_in "train at max_steps" "nothing to do" "$OUT"

# --- 2b. train.precision on the CPU (bf16/f16 storage, f32 compute, f32 masters): the 8 steps of run B within a
# stated tolerance; f16 records its loss scale, which its checkpoint keeps; a bf16 run resumes in f32. ----------
expect_in "train.device auto" "device cpu (train.device auto: no usable GPU" "$OUT"
for precision in bf16 f16; do
  px "train 8 in $precision" 0 train "$CONFIG" --run-dir "$WORK/run_$precision" --set train.max_steps=8 \
    --set train.precision=$precision
  expect_in "train 8 in $precision" "precision $precision" "$OUT"
done
expect_in "train 8 in f16" "with dynamic loss scaling" "$OUT"
$PY - "$B" "$WORK/run_bf16" "$WORK/run_f16" <<'EOF' || fail "bf16/f16 loss curves"
import json, sys
def records(run):
    return [r for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r]
f32, bf16, f16 = (records(run) for run in sys.argv[1:])
assert [r["step"] for r in bf16] == [r["step"] for r in f32] == [r["step"] for r in f16] == list(range(1, 9))
for tol, curve in ((0.02, bf16), (0.005, f16)):
    for a, b in zip(curve, f32):
        assert abs(a["loss"] - b["loss"]) <= tol * b["loss"], (a["step"], a["loss"], b["loss"])
assert bf16 != f32, "bf16 losses equal f32's bit for bit: the precision was not applied"
assert all(r["loss_scale"] == 65536.0 for r in f16), [r.get("loss_scale") for r in f16]
assert all("loss_scale" not in r for r in bf16)
EOF
grep -q "loss_scale" "$WORK/run_f16/checkpoints/step_8/manifest.pbtxt" || fail "f16: the checkpoint lacks loss_scale"
grep -q "loss_scale" "$WORK/run_bf16/checkpoints/step_8/manifest.pbtxt" && fail "bf16: the checkpoint has a loss_scale"
px "resume bf16 in f32" 0 train --run-dir "$WORK/run_bf16" --set train.max_steps=10 --set train.precision=f32
expect_in "resume bf16 in f32" "step  9/10 | loss" "$OUT"
expect_in "resume bf16 in f32" "precision f32" "$OUT"

# --- 3. bad input: exit 2, one line "parallax: error: ..." naming the problem, the run dir untouched. --------
# bad_input NAME DIR KEYWORD ARGS...: DIR must be byte-for-byte the same (or still absent) afterwards.
bad_input() {
  local name=$1 dir=$2 keyword=$3
  shift 3
  local before
  before=$(snapshot "$dir")
  px "$name" 2 "$@" </dev/null
  if [ "$(printf '%s\n' "$ERR" | wc -l)" -ne 1 ] || [[ "$ERR" != "parallax: error: "* ]]; then
    fail "$name: stderr is not one 'parallax: error:' line"
    echo "$ERR" | head -5
  fi
  expect_in "$name" "$keyword" "$ERR"
  [ "$before" = "$(snapshot "$dir")" ] || fail "$name: $dir changed"
}
write_config "$WORK/no_data.pbtxt" "$WORK/no_such_data"
bad_input "missing data.dir, new run" "$WORK/run_new" "no_such_data" train "$WORK/no_data.pbtxt" \
  --run-dir "$WORK/run_new"
bad_input "missing data.dir, resume" "$A" "no_such_data" train --run-dir "$A" --set data.dir="$WORK/no_such_data" \
  --set train.max_steps=12
sed 's/dir: "[^"]*"//' "$CONFIG" >"$WORK/unset_data.pbtxt"
bad_input "data.dir unset" "$WORK/run_new" "data.dir" train "$WORK/unset_data.pbtxt" --run-dir "$WORK/run_new"
bad_input "missing valid split" "$WORK/run_new" "nosuch" train "$CONFIG" --run-dir "$WORK/run_new" \
  --set data.valid_split=nosuch
write_config "$WORK/typo.pbtxt" "$WORK/data" "d_modle: 32"
bad_input "typo'd field" "$WORK/run_new" "d_modle" train "$WORK/typo.pbtxt" --run-dir "$WORK/run_new"
bad_input "typo'd field, resume" "$A" "d_modle" train "$WORK/typo.pbtxt" --run-dir "$A"
write_config "$WORK/wrong_type.pbtxt" "$WORK/data" "num_heads: \"two\""
bad_input "wrong type" "$WORK/run_new" "num_heads" train "$WORK/wrong_type.pbtxt" --run-dir "$WORK/run_new"
bad_input "--set wrong type" "$A" "train.max_steps" train --run-dir "$A" --set train.max_steps=lots
bad_input "--set unknown field" "$A" "max_stepz" train --run-dir "$A" --set train.max_stepz=12
bad_input "run dir of another model" "$A" "model.translator.d_model" train --run-dir "$A" --set model.d_model=64 \
  --set train.max_steps=12
bad_input "train.device cuda without a GPU" "$WORK/run_new" "train.device: cuda, but this machine has no usable GPU" \
  train "$CONFIG" --run-dir "$WORK/run_new" --set train.device=cuda
bad_input "unknown train.precision" "$WORK/run_new" "train.precision" train "$CONFIG" --run-dir "$WORK/run_new" \
  --set train.precision=fp8
bad_input "unknown parallel.grad_dtype" "$WORK/run_new" "parallel.grad_dtype" train "$CONFIG" \
  --run-dir "$WORK/run_new" --set parallel.grad_dtype=f16
bad_input "new run dir without CONFIG" "$WORK/run_new" "CONFIG" train --run-dir "$WORK/run_new"
mkdir "$WORK/not_a_run"
bad_input "eval without a run" "$WORK/not_a_run" "not a run directory" eval --run-dir "$WORK/not_a_run"
bad_input "translate without a run" "$WORK/not_a_run" "not a run directory" translate --run-dir "$WORK/not_a_run"
bad_input "eval on a missing dir" "$WORK/no_such_run" "no_such_run" eval --run-dir "$WORK/no_such_run"
bad_input "eval on a missing split" "$A" "nosuch" eval --run-dir "$A" --split nosuch
bad_input "translate, overrides change the model" "$A" "model.translator.d_model" translate --run-dir "$A" \
  --set model.d_model=64
# A dataset of the same vocabulary size but another tokenizer (Spanish only): its ids mean other pieces.
px "build-translation, another tokenizer" 0 data build-translation --src "$WORK/train.es" --tgt "$WORK/train.es" \
  --valid-src "$WORK/valid.es" --valid-tgt "$WORK/valid.es" --test-src "$WORK/test.es" --test-tgt "$WORK/test.es" \
  --out "$WORK/data_b" --shards 1 --vocab-size 300
bad_input "resume on another tokenizer's data" "$A" "tokenizer" train --run-dir "$A" --set data.dir="$WORK/data_b" \
  --set train.max_steps=12
bad_input "eval on another tokenizer's data" "$A" "tokenizer" eval --run-dir "$A" --set data.dir="$WORK/data_b"
bad_input "eval --device cuda without a GPU" "$A" "--device: cuda, but this machine has no usable GPU" \
  eval --run-dir "$A" --device cuda
bad_input "translate --device cuda without a GPU" "$A" "--device: cuda, but this machine has no usable GPU" \
  translate --run-dir "$A" --device cuda
bad_input "eval --device unknown" "$A" "--device" eval --run-dir "$A" --device tpu

# --- 6. SIGTERM saves a checkpoint and exits 0; the resume continues from that step. ------------------------
T="$WORK/run_t"
"$PARALLAX" train "$CONFIG" --run-dir "$T" --set train.max_steps=1000000 --set eval.every_steps=0 \
  --set checkpoint.every_steps=0 >"$WORK/sigterm.out" 2>"$WORK/sigterm.err" &
BG_PID=$!
for _ in $(seq 1200); do  # up to 120 s for the first progress line
  grep -q "^step " "$WORK/sigterm.out" && break
  kill -0 "$BG_PID" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "$BG_PID" 2>/dev/null || fail "SIGTERM: training exited before the signal"
for _ in $(seq 1200); do  # up to 120 s to save and exit
  kill -0 "$BG_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$BG_PID" 2>/dev/null && { fail "SIGTERM: still running after 120 s"; kill -KILL "$BG_PID"; }
wait "$BG_PID"
rc=$?
BG_PID=""
stopped=$(sed -n 's/^stopped by SIGTERM at step \([0-9]*\);.*/\1/p' "$WORK/sigterm.out")
if [ "$rc" -ne 0 ] || [ -z "$stopped" ]; then
  fail "SIGTERM: exit $rc, no 'stopped by SIGTERM' line"
  tail -5 "$WORK/sigterm.out" "$WORK/sigterm.err"
  echo "$fails failure(s)"
  exit 1
fi
echo "ok   SIGTERM at step $stopped"
[ "$(cat "$T/checkpoints/latest")" = "step_$stopped" ] || fail "SIGTERM: latest is not step_$stopped"
grep -q "^step: $stopped\$" "$T/checkpoints/step_$stopped/manifest.pbtxt" || fail "SIGTERM: manifest step"
# 200 more steps teach the model enough digit words for the eval and translate checks below.
target=$((stopped + 200))
px "resume after SIGTERM" 0 train --run-dir "$T" --set train.max_steps=$target
expect_in "resume after SIGTERM" "(step $stopped)" "$OUT"
grep -qE "^step +$((stopped + 1))/$target \|" <<<"$OUT" ||
  fail "resume after SIGTERM: no progress line for step $((stopped + 1))"

# --- 4. eval: loss and BLEU printed and appended to metrics.jsonl, --output one line per sentence. ---------
px "eval test" 0 eval --run-dir "$T" --split test --output "$WORK/hyp.txt"
expect_in "eval test" "test @ step $target: loss" "$OUT"
expect_in "eval test" "BLEU" "$OUT"
expect_in "eval --device auto" "device cpu (--device auto: no usable GPU" "$OUT"
[ "$(wc -l <"$WORK/hyp.txt")" -eq 30 ] || fail "eval --output: $(wc -l <"$WORK/hyp.txt") lines for 30 sentences"
# The examples printed are the first lines of --output.
[ "$(sed -n 's/^  hyp: //p' <<<"$OUT")" = "$(head -3 "$WORK/hyp.txt")" ] || fail "eval: printed hyp != --output"
$PY - "$T/metrics.jsonl" "$target" <<'EOF' || fail "eval: metrics.jsonl record"
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert last["step"] == int(sys.argv[2]) and last["test_loss"] > 0, last
# Measured: BLEU 4.7 after 150 steps, 7.5 after 200, 6.9 after 230 (unigram precision above 50%); an
# untrained model scores 0. Above 1 means the words are learnt and decoded, with room for numeric noise.
assert 1 < last["test_bleu"] <= 100, last
EOF
px "eval --max-sentences --beam 1" 0 eval --run-dir "$T" --split valid --beam 1 --max-sentences 5 --show 0 \
  --output "$WORK/hyp5.txt"
[ "$(wc -l <"$WORK/hyp5.txt")" -eq 5 ] || fail "eval --max-sentences 5: $(wc -l <"$WORK/hyp5.txt") lines"
tail -1 "$T/metrics.jsonl" | grep -q '"valid_bleu"' || fail "eval --split valid: no valid_bleu record"

# --- 5. translate: a line per line in order, empty lines, empty input, a line cut to max_positions. --------
long_line=$(printf 'one two three %.0s' $(seq 14))  # 42 words: more tokens than max_positions 32
printf '%s\n' "one two three" "nine eight seven six" "" "five" "four four zero one two" "$long_line" "three" \
  >"$WORK/in.txt"
px "translate" 0 translate --run-dir "$T" <"$WORK/in.txt"
cp "$WORK/stdout" "$WORK/out.txt"
[ "$(wc -l <"$WORK/out.txt")" -eq 7 ] || fail "translate: $(wc -l <"$WORK/out.txt") lines for 7"
[ -z "$(sed -n 3p "$WORK/out.txt")" ] || fail "translate: the empty line 3 gave '$(sed -n 3p "$WORK/out.txt")'"
[ -n "$(sed -n 6p "$WORK/out.txt")" ] || fail "translate: the cut line 6 gave nothing"
expect_in "translate warns about the long line" "line 6 " "$ERR"
[ "$(grep -c "line [0-9]" <<<"$ERR")" -eq 1 ] || fail "translate: expected one warning, got: $ERR"
# Order: the lines decoded together (sorted by length inside) equal the lines decoded one at a time; the
# check means something only if the lines translate differently.
px "translate --batch-lines 1" 0 translate --run-dir "$T" --batch-lines 1 <"$WORK/in.txt"
if ! cmp -s "$WORK/stdout" "$WORK/out.txt"; then
  fail "translate: batched != one line at a time"
  diff "$WORK/stdout" "$WORK/out.txt"
fi
[ "$(grep -v '^$' "$WORK/out.txt" | sort -u | wc -l)" -ge 4 ] || fail "translate: too few distinct outputs"
px "translate empty stdin" 0 translate --run-dir "$T" </dev/null
[ -z "$OUT" ] || fail "translate empty stdin: wrote '$OUT'"
printf 'one two\n\nthree' >"$WORK/no_newline.txt"  # the last line has no newline
px "translate unterminated last line" 0 translate --run-dir "$T" <"$WORK/no_newline.txt"
[ "$(wc -l <"$WORK/stdout")" -eq 3 ] || fail "translate: $(wc -l <"$WORK/stdout") lines for 3"
for beam in 1 3; do
  px "translate --beam $beam" 0 translate --run-dir "$T" --beam "$beam" <"$WORK/in.txt"
  [ "$(wc -l <"$WORK/stdout")" -eq 7 ] || fail "translate --beam $beam: $(wc -l <"$WORK/stdout") lines for 7"
  [ -z "$(sed -n 3p "$WORK/stdout")" ] || fail "translate --beam $beam: the empty line gave output"
done

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
