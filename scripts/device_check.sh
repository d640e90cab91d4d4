#!/usr/bin/env bash
# The one GPU check for the borrowed GPU machine: CUDA tests, 2 ranks on one GPU under the bundled mpirun, CPU<->GPU
# resume, a few hundred Bible steps with eval and translate, DETR training and COCO evaluation on the GPU, the
# translator-step benchmark against the machine's torch.
#
# How to run it with the device tool (after scripts/make_device_bundle.sh here; .devbundle is git-ignored):
#   run  command:   bash scripts/device_check.sh
#        carry:     [".devbundle"]
#        timeout_s: 540          (the check stops itself after DEVICE_CHECK_BUDGET_S, default 420 s)
# What comes back under $OUT (at most 8 files travel back, so the per-step logs are packed):
#   summary.txt (one line per step), env.txt (GPU, libraries, versions), bench.txt (the benchmark's output),
#   failures.txt (the end of every failed step's log), logs.tar.gz (logs/NN-<step>.log of every step).
# Here, without a GPU, every GPU step skips and the script exits 0 (DEVICE_CHECK_CPU_STANDIN=1 runs the train,
# resume and mpirun steps on the CPU instead, to test their commands). Exit 1 when a step fails or a GPU test
# skips although nvidia-smi lists a GPU; 2 when the bundle is missing or a library cannot be found.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

archive=.devbundle/bundle.tar.xz
out=${OUT:-${TMPDIR:-/tmp}/parallax-device-check}
budget_s=${DEVICE_CHECK_BUDGET_S:-420}
standin=${DEVICE_CHECK_CPU_STANDIN:-0}
# Not packed (too large): taken from the machine's CUDA 13 image.
machine_libs=(libcublas.so.13 libcublasLt.so.13 libnccl.so.2)
gtests=(backend_ops_test ops_on_cuda_test caching_allocator_test deterministic_index_test multi_tensor_adamw_test
        nccl_test nccl_routed_test index_check_test pinned_memory_test device_batches_test translator_gpu_test
        checkpoint_test)
# Tests with CPU cases too run only their GPU cases here (checkpoint_test has a case that skips as root).
declare -A gtest_filter=([checkpoint_test]='*Gpu*')

mkdir -p "$out/logs"
rm -f "$out"/logs/*.log "$out"/{summary,failures,bench}.txt "$out/logs.tar.gz"
[[ -f $archive ]] || { echo "no $archive: run scripts/make_device_bundle.sh and carry .devbundle" >&2; exit 2; }
bundle=$(mktemp -d "${TMPDIR:-/tmp}/parallax-devbundle.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/parallax-devwork.XXXXXX")
pack_logs() {
  if [[ -n ${OUT:-} ]]; then  # the device tool returns 8 files at most: one archive instead of a file per step
    tar -C "$out" -czf "$out/logs.tar.gz" logs && rm -rf "$out/logs"
  fi
}
trap 'pack_logs; rm -rf "$bundle" "$work"' EXIT
start_s=$SECONDS
if command -v xz >/dev/null; then
  tar -C "$bundle" -xJf "$archive"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$bundle"
fi || { echo "could not unpack $archive" >&2; exit 2; }
echo "unpacked $archive in $((SECONDS - start_s)) s"

# ---- libraries: the bundle's, then the machine's cuBLAS and NCCL --------------------------------------------------
# The folder holding `name` on this machine: nothing when the loader's cache knows it, else the CUDA toolkit,
# the Python packages' nvidia/*/lib folders, then a search of the file system.
find_lib_dir() {
  local name=$1 dir
  if grep -q "^[[:space:]]*$name " <<<"$loader_cache"; then return 0; fi
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e $dir/$name ]] && { echo "$dir"; return 0; }
  done
  for dir in $(python3 -c 'import glob, site; print(" ".join(d for s in site.getsitepackages()
                                                   for d in glob.glob(s + "/nvidia/*/lib")))' 2>/dev/null); do
    [[ -e $dir/$name ]] && { echo "$dir"; return 0; }
  done
  dir=$(timeout 20 find / -xdev -name "$name" -print -quit 2>/dev/null)
  [[ -n $dir ]] && dirname "$dir"
}
loader_cache=$(ldconfig -p 2>/dev/null)
px_libs=$bundle/lib
for name in "${machine_libs[@]}"; do
  dir=$(find_lib_dir "$name")
  [[ -n $dir && :$px_libs: != *:$dir:* ]] && px_libs=$px_libs:$dir
done
# Only Parallax's processes (and the bundled mpirun) see the bundle's libraries: its libstdc++ is older than the
# one the machine's Python and torch need. bin/ holds wrappers that set them (bench/ for step_vs_torch.py).
px_env=(env "LD_LIBRARY_PATH=$px_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
mkdir -p "$work/bin" "$work/build/bench"
for exe in launcher/parallax bench/bench_translator_step; do
  [[ -x $bundle/$exe ]] || continue
  printf '#!/bin/sh\nexec %s %q "$@"\n' "$(printf '%q ' "${px_env[@]}")" "$bundle/$exe" >"$work/bin/${exe##*/}"
  chmod +x "$work/bin/${exe##*/}"
done
cp "$work/bin/bench_translator_step" "$work/build/bench/" 2>/dev/null
px=$work/bin/parallax
export GLOG_logtostderr=1 HDF5_USE_FILE_LOCKING=FALSE PYTHONUNBUFFERED=1
# NCCL's bootstrap needs no network beyond loopback (the machine may have no other interface); warnings to the logs.
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# The bundled Open MPI at its unpacked place (OPAL_PREFIX; PMIx's own variables for its plugins and help files);
# shared memory and self only, as root, any number of ranks on the 16 cores.
pmix=$bundle/mpi/lib/x86_64-linux-gnu/pmix2
export OPAL_PREFIX=$bundle/mpi PMIX_PREFIX=$pmix PMIX_DATADIR=$pmix/share PMIX_LIBDIR=$pmix/lib \
  PMIX_MCA_mca_base_component_path=$pmix/lib/pmix OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 \
  OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=("${px_env[@]}" "$bundle/mpi/bin/orterun" --oversubscribe --allow-run-as-root --bind-to none)

# ---- env.txt: the GPU, the loader's view of every binary, versions -------------------------------------------------
gpu_listed=0
{
  echo "== date: $(date -u +%FT%TZ), host $(hostname), $(nproc) cores"
  echo "== nvidia-smi -L"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
  echo "== glibc: $(ldd --version | awk 'NR == 1')"
  echo "== python3: $(command -v python3) $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch",
    torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "== ncu: $(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)"
  echo "== machine libraries: ${px_libs#"$bundle/lib"}"
  echo "== bundle: $(cat "$bundle/MANIFEST" 2>/dev/null | head -3)"
  for exe in launcher/parallax bench/bench_translator_step "${gtests[@]/#/tests/}" tests/comm_mpi_test \
    mpi/bin/orterun; do
    echo "== ldd $exe"
    "${px_env[@]}" ldd "$bundle/$exe"
  done
  echo "== mpirun --version"
  "${mpirun[@]:0:3}" --version
} >"$out/env.txt" 2>&1
# nvidia-smi writes "GPU 0: ..." lines only when it sees a GPU.
grep -q '^GPU [0-9]' "$out/env.txt" && gpu_listed=1
grep -E '^== (date|python3|ncu)|^GPU [0-9]' "$out/env.txt"
if grep -q '=> not found' "$out/env.txt"; then
  echo "missing libraries:" >&2
  grep '=> not found' "$out/env.txt" | sort -u >&2
  exit 2
fi
# Where the GPU steps run: the GPU, or (stand-in, to test the commands here) the CPU, or nowhere.
gdev=cuda
if (( !gpu_listed )); then
  if (( standin )); then gdev=cpu; echo "no GPU: the GPU steps run on the CPU (DEVICE_CHECK_CPU_STANDIN=1)"; else gdev=; fi
fi

# ---- steps -----------------------------------------------------------------------------------------------------------
status=0
n=0
# record STEP RESULT NOTE: one summary line (RESULT: ok | FAIL | SKIP | WARN | N/A).
record() {
  printf '%-26s %-5s %s\n' "$1" "$2" "$3" | tee -a "$out/summary.txt"
  if [[ $2 == FAIL ]]; then
    status=1
    { echo "==== $1: $3"; tail -n 40 "$log"; } >>"$out/failures.txt"
  fi
}
# step NAME TIMEOUT_S COMMAND...: runs it with stdout and stderr in logs/NN-NAME.log, within its own timeout and
# what is left of the budget; sets $log and $rc (124: killed at the timeout; 125: not run, budget spent).
step() {
  local name=$1 limit=$2
  shift 2
  n=$((n + 1))
  log=$out/logs/$(printf '%02d' "$n")-$name.log
  local left=$((budget_s - (SECONDS - start_s)))
  (( limit > left )) && limit=$left
  if (( limit < 15 )); then
    echo "not run: ${left} s of the ${budget_s} s budget left" >"$log"
    rc=125
    return
  fi
  local t0=$SECONDS
  echo "== $name: $*" >"$log"
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1 </dev/null
  rc=$?
  secs=$((SECONDS - t0))
  (( rc == 124 || rc == 137 )) && { rc=124; echo "== killed after $limit s" >>"$log"; }
}
# verdict NAME [NOTE]: FAIL on a non-zero $rc (with why), else ok.
verdict() {
  case $rc in
    0) record "$1" ok "${secs} s${2:+; $2}" ;;
    124) record "$1" FAIL "killed after ${secs} s" ;;
    125) record "$1" SKIP "not run: the ${budget_s} s budget is spent"; (( gpu_listed )) && status=1 ;;
    *) record "$1" FAIL "exit $rc after ${secs} s${2:+; $2}; $(grep -m1 -E 'error|Error|FAILED' "$log" | cut -c1-140)" ;;
  esac
}
no_gpu() { record "$1" SKIP "no GPU (nvidia-smi lists none)"; }

# 1. The CUDA tests (each skips its GPU cases without a GPU).
for t in "${gtests[@]}"; do
  case $t in backend_ops_test | translator_gpu_test) limit=150 ;; *) limit=100 ;; esac
  step "$t" "$limit" "${px_env[@]}" "$bundle/tests/$t" --gtest_brief=1 --gtest_color=no \
    ${gtest_filter[$t]:+"--gtest_filter=${gtest_filter[$t]}"}
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+' "$log" | grep -oE '[0-9]+$' | head -1)
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$' | head -1)
  cuda_line=$(grep -m1 -oE 'CUDA: .*' "$log")
  note="${passed:-0} passed${skipped:+, $skipped skipped}${cuda_line:+; $cuda_line}"
  if (( rc == 0 && gpu_listed && ${skipped:-0} > 0 )); then
    record "$t" FAIL "$note: tests skipped although nvidia-smi lists a GPU"
  elif (( rc == 0 && ${skipped:-0} > 0 )); then
    record "$t" SKIP "${secs} s; $note"
  else
    verdict "$t" "$note"
  fi
done

# 2. mpirun from the bundle: the MPI collectives test at 2 ranks (CPU; no multi-rank test uses a GPU yet), then the
# translator at dp 2 on the one GPU through parallel.gpu_collectives: mpi (staged through host memory; NCCL refuses
# two ranks on one GPU).
step mpirun_comm_mpi_test_np2 120 "${mpirun[@]}" -np 2 "$bundle/tests/comm_mpi_test" --gtest_brief=1 --gtest_color=no
verdict mpirun_comm_mpi_test_np2 "$(grep -m1 -E '^\[  PASSED' "$log")"

data=$bundle/data/bible_en_es
tiny=(configs/translator_bible_tiny.pbtxt --set "data.dir=$data" --set train.max_minutes=3 --set log.every_steps=10
      --set eval.every_steps=0 --set eval.max_sentences=16 --set eval.beam=1 --set checkpoint.every_steps=10)
# train_check NAME RUN_DIR STEPS DEVICE [MPIRUN...]: `parallax train` to STEPS (new or resumed) on DEVICE, with the
# --set pairs in $extra_sets; ok when it exits 0, says it computes on DEVICE and the latest checkpoint is step_STEPS.
extra_sets=()
train_check() {
  local name=$1 dir=$2 steps=$3 dev=$4
  shift 4
  local args=(train --run-dir "$dir" --set "train.max_steps=$steps" --set "train.device=$dev" "${extra_sets[@]}")
  [[ -d $dir ]] || args=(train "${tiny[@]}" "${args[@]:1}")
  step "$name" 120 "$@" "$px" "${args[@]}"
  local latest
  latest=$(cat "$dir/checkpoints/latest" 2>/dev/null)
  if (( rc == 0 )) && ! grep -q "device $dev" "$log"; then
    record "$name" FAIL "exit 0 but the log does not say 'device $dev'"
  elif (( rc == 0 )) && [[ $latest != "step_$steps" ]]; then
    record "$name" FAIL "exit 0 but checkpoints/latest is '$latest', not step_$steps"
  else
    verdict "$name" "$(grep -m1 -oE "step +$steps/$steps \| loss [0-9.]+" "$log")"
  fi
}

if [[ -z $gdev ]]; then
  no_gpu mpirun_dp2_one_gpu
else
  extra_sets=(--set parallel.gpu_collectives=mpi)
  train_check mpirun_dp2_one_gpu "$work/dp2" 20 "$gdev" "${mpirun[@]}" -np 2
  extra_sets=()
fi

# 3. Resume across devices: 10 steps on one, 10 more on the other, both ways.
if [[ -z $gdev ]]; then
  no_gpu resume_gpu_then_cpu
  no_gpu resume_cpu_then_gpu
else
  train_check train_gpu_10 "$work/g2c" 10 "$gdev"
  if (( rc == 0 )); then train_check resume_gpu_then_cpu "$work/g2c" 20 cpu
  else record resume_gpu_then_cpu SKIP "its first half failed"; fi
  train_check train_cpu_10 "$work/c2g" 10 cpu
  if (( rc == 0 )); then train_check resume_cpu_then_gpu "$work/c2g" 20 "$gdev"
  else record resume_cpu_then_gpu SKIP "its first half failed"; fi
fi

# 4. The tiny translator on the Bible shards for a few hundred steps on the GPU, then test BLEU (beam 4) and a
# translation, both decoding on the GPU (--device cuda).
if [[ -z $gdev || $gdev == cpu ]]; then
  record bible_train_300 SKIP "no GPU (nvidia-smi lists none): 300 steps are too slow for the CPU stand-in"
else
  bible=$work/bible
  step bible_train_300 150 "$px" train "${tiny[@]}" --run-dir "$bible" --set train.max_steps=300 \
    --set train.device=cuda --set log.every_steps=50 --set eval.max_sentences=200 --set checkpoint.every_steps=100
  verdict bible_train_300 "$(grep -oE 'step +300/300 \| loss [0-9.]+' "$log" | tail -1)"
  if (( rc == 0 )); then
    dev_args=(--device cuda)
    step bible_eval_test_beam4 120 "$px" eval --run-dir "$bible" --split test --beam 4 --max-sentences 200 \
      "${dev_args[@]}"
    verdict bible_eval_test_beam4 "$(grep -m1 -oE 'BLEU [0-9.]+' "$log")"
    step bible_translate 60 bash -c 'echo "In the beginning God created the heaven and the earth." |
      "$0" translate --run-dir "$1" --beam 4 "${@:2}"' "$px" "$bible" "${dev_args[@]}"
    verdict bible_translate "$(tail -n 1 "$log" | cut -c1-80)"
  fi
fi

# 4b. DETR (configs/detr_fashion_tiny.pbtxt) on the bundled scenes: 200 steps on the GPU in bf16 with the COCO
# evaluation at the end, then 10 more steps resumed on the CPU (f32) from the GPU's checkpoint.
if [[ -z $gdev ]]; then
  no_gpu detr_train_200
else
  detr=$work/detr
  detr_steps=200
  [[ $gdev == cpu ]] && detr_steps=20
  step detr_train_$detr_steps 150 "$px" train configs/detr_fashion_tiny.pbtxt --run-dir "$detr" \
    --set "data.dir=$bundle/data/fashion_scenes" --set "train.max_steps=$detr_steps" --set "train.device=$gdev" \
    --set train.max_minutes=2 --set log.every_steps=20 --set eval.every_steps=0 --set eval.max_images=200 \
    --set checkpoint.every_steps=100
  verdict detr_train_$detr_steps "$(grep -oE "step +$detr_steps/$detr_steps \| loss [0-9.]+" "$log" | tail -1); \
$(grep -m1 -oE 'valid mAP [0-9.]+ \| AP50 [0-9.]+' "$log")"
  if (( rc == 0 )); then
    step detr_resume_on_cpu 90 "$px" train --run-dir "$detr" --set "train.max_steps=$((detr_steps + 10))" \
      --set train.device=cpu --set eval.max_images=32
    verdict detr_resume_on_cpu "$(grep -oE "step +$((detr_steps + 10))/$((detr_steps + 10)) \| loss [0-9.]+" "$log")"
  fi
fi

# 5. The benchmark: Parallax's bf16 training step of the base translator (vocab 32k, ~25k target tokens) against
# the machine's PyTorch, then (optional) ncu's per-kernel times of one Parallax step.
if (( !gpu_listed )); then
  step bench_step_vs_torch 30 python3 bench/translator/step_vs_torch.py --device cuda
  if (( rc == 0 )) && grep -q 'no GPU here' "$log"; then record bench_step_vs_torch SKIP "$(tail -n 1 "$log")"
  else verdict bench_step_vs_torch "$(tail -n 1 "$log")"; fi
else
  step bench_step_vs_torch 200 python3 bench/translator/step_vs_torch.py --device cuda --build-dir "$work/build" \
    --warmup 3 --reps 8 --profile
  verdict bench_step_vs_torch "$(grep -m1 -oE 'ratio parallax/torch: time [0-9.]+' "$log")"
  cp "$log" "$out/bench.txt"
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  if [[ -z $ncu ]]; then
    record bench_ncu_kernels N/A "no ncu on this machine: the phase split in bench.txt is all there is"
  else
    step bench_ncu_kernels 120 "$ncu" --profile-from-start off --clock-control none --target-processes all \
      --metrics gpu__time_duration.sum --csv --print-units base --log-file "$work/ncu.csv" \
      "$work/build/bench/bench_translator_step" --vocab 32000 --d-model 512 --heads 8 --encoder-layers 6 \
      --decoder-layers 6 --d-ff 2048 --pre-norm 0 --B 800 --min-len 26 --max-len 36 --warmup 2 --reps 1 \
      --device cuda --precision bf16 --profile-step 1
    python3 bench/translator/ncu_summary.py "$work/ncu.csv" >>"$log" 2>&1 || { (( rc == 0 )) && rc=1; }
    # A profiler that cannot read the counters here is worth a line, not a failed check.
    if (( rc == 0 )); then record bench_ncu_kernels ok "${secs} s; $(grep -m1 -oE '[0-9]+ kernels, [0-9.]+ ms' "$log")"
    elif (( rc == 125 )); then record bench_ncu_kernels WARN "not run: the ${budget_s} s budget is spent (optional)"
    else record bench_ncu_kernels WARN "exit $rc after ${secs:-0} s (optional: see its log)"; fi
    { echo; echo "## ncu: per-kernel times of one Parallax step"; sed -n '/^# [0-9]* kernels/,$p' "$log"; } \
      >>"$out/bench.txt"
  fi
fi

fails=$(grep -c ' FAIL ' "$out/summary.txt")
echo "device check: $( ((status == 0)) && echo PASSED || echo "FAILED ($fails steps)") in $((SECONDS - start_s)) s" \
  "(logs in $out)" | tee -a "$out/summary.txt"
exit $status
