#!/usr/bin/env bash
# bench/translator/compare_bleu.sh: a trained Parallax run's test BLEU (beam 4) next to that of the PyTorch reference
# (train_torch.py) trained with the run's config, data and number of steps, and their difference.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: bench/translator/compare_bleu.sh RUN_DIR [STEPS] [-- TRAIN_TORCH_ARGS...]
  RUN_DIR  a run dir of `parallax train` (config.pbtxt + checkpoints/latest)
  STEPS    updates of the PyTorch run; default: the step of RUN_DIR's latest checkpoint
  after --, arguments passed on to train_torch.py (e.g. --valid, --set eval.length_penalty=0.6)
environment: PARALLAX (default build/launcher/parallax), THREADS (2), BEAM (4),
             MAX_SENTENCES (0: the whole test split; N: its first N, for a quick check of the script),
             TORCH_RUN_DIR (default RUN_DIR/torch_reference)
EOF
  exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[[ $# -ge 1 && "$1" != -* ]] || usage
run_dir="$(cd "$1" && pwd)"
shift
steps=""
if [[ $# -ge 1 && "$1" != "--" ]]; then
  steps="$1"
  shift
fi
[[ $# -eq 0 || "$1" == "--" ]] || usage
[[ $# -ge 1 ]] && shift
parallax="$(realpath -m -- "${PARALLAX:-$repo/build/launcher/parallax}")"
threads="${THREADS:-2}"
beam="${BEAM:-4}"
max_sentences="${MAX_SENTENCES:-0}"
torch_dir="$(realpath -m -- "${TORCH_RUN_DIR:-$run_dir/torch_reference}")"  # absolute: the script cds

if [[ ! -x "$parallax" ]]; then
  echo "compare_bleu.sh: $parallax is not built (cmake --build build --target parallax)" >&2
  exit 1
fi
[[ -f "$run_dir/config.pbtxt" && -f "$run_dir/checkpoints/latest" ]] ||
  { echo "compare_bleu.sh: $run_dir is not a trained run dir (no config.pbtxt or checkpoints/latest)" >&2; exit 1; }
checkpoint_step="$(sed -n 's/^step_\([0-9]*\)$/\1/p' "$run_dir/checkpoints/latest")"
steps="${steps:-$checkpoint_step}"
if [[ ! "$steps" =~ ^[1-9][0-9]*$ ]]; then
  echo "compare_bleu.sh: STEPS must be a positive integer, got '$steps'" >&2
  exit 2
fi
if [[ "$steps" != "$checkpoint_step" ]]; then
  echo "compare_bleu.sh: warning: PyTorch trains $steps steps, the Parallax checkpoint is at step $checkpoint_step" >&2
fi

cd "$repo"  # data.dir in the config is relative to the repository root, as for `parallax train`
mkdir -p "$torch_dir"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg), threads=$threads, beam $beam, $steps steps"

echo "== parallax eval --run-dir $run_dir --split test --beam $beam"
PARALLAX_NUM_THREADS="$threads" "$parallax" eval --run-dir "$run_dir" --split test --beam "$beam" \
  --max-sentences "$max_sentences" --output "$run_dir/test.hyp.txt" | tee "$torch_dir/parallax_eval.log"
parallax_bleu="$(sed -n 's/^BLEU = \([0-9.]*\) .*/\1/p' "$torch_dir/parallax_eval.log")"

echo "== train_torch.py $run_dir/config.pbtxt --max-steps $steps --threads $threads $*"
/usr/bin/python3 -u "$here/train_torch.py" "$run_dir/config.pbtxt" --run-dir "$torch_dir" --max-steps "$steps" \
  --threads "$threads" --beam "$beam" --max-sentences "$max_sentences" "$@" | tee "$torch_dir/train_torch.log"
torch_bleu="$(sed -n 's/^BLEU = \([0-9.]*\) .*/\1/p' "$torch_dir/train_torch.log")"

# Parallax's hypotheses scored by sacreBLEU against the references train_torch.py wrote: both BLEUs by one scorer.
parallax_sacrebleu="$(/usr/bin/python3 -c '
import sys, sacrebleu
hyps, refs = (open(p, encoding="utf-8").read().splitlines() for p in sys.argv[1:])
print(f"{sacrebleu.corpus_bleu(hyps, [refs]).score:.2f}")' "$run_dir/test.hyp.txt" "$torch_dir/test.ref.txt")"

mean_step_time() {  # mean step_time_s over a metrics.jsonl's progress records
  /usr/bin/python3 -c '
import json, sys
times = [r["step_time_s"] for r in map(json.loads, open(sys.argv[1])) if r.get("step_time_s") is not None]
print(f"{sum(times) / len(times):.2f} s/step" if times else "--")' "$1"
}

echo "== test BLEU, beam $beam, after $steps steps (load now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf "parallax  BLEU %6s  (sacreBLEU on its hypotheses: %s)  mean %s\n" "$parallax_bleu" "$parallax_sacrebleu" \
  "$(mean_step_time "$run_dir/metrics.jsonl")"
printf "pytorch   BLEU %6s  mean %s (%s threads)\n" "$torch_bleu" "$(mean_step_time "$torch_dir/metrics.jsonl")" \
  "$threads"
/usr/bin/python3 -c '
import sys
diff = float(sys.argv[1]) - float(sys.argv[2])
verdict = "met" if diff >= -0.5 else "NOT met"
print(f"difference parallax - pytorch: {diff:+.2f} BLEU (goal >= -0.5: {verdict})")' \
  "$parallax_bleu" "$torch_bleu"
