#!/usr/bin/env bash
# bench/run_all.sh: runs the GEMM, ops-block, conv, translator-step and (under mpirun, 2 ranks) collective-bandwidth and
# dp-overlap benchmarks of a build dir (builds nothing), then their SUMMARY lines. Usage: bench/run_all.sh [BUILD_DIR] [--quick]; THREADS (default 2) sets every thread pool.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
quick=""
[[ "${2:-}" == "--quick" || "${1:-}" == "--quick" ]] && quick="--quick"
[[ "$build" == "--quick" ]] && build="$here/../build"
threads="${THREADS:-2}"
export PARALLAX_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

for bin in bench_gemm bench_ops bench_conv bench_translator_step parallel/bench_collective_bandwidth parallel/bench_dp_overlap; do
  if [[ ! -x "$build/bench/$bin" ]]; then
    echo "run_all.sh: $build/bench/$bin is missing; build it first:" >&2
    echo "  cmake --build $build --target bench_gemm bench_ops bench_conv bench_translator_step bench_collective_bandwidth" \
      "bench_dp_overlap" >&2
    exit 1
  fi
done

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg), threads=$threads"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "== bench_gemm $quick"
"$build/bench/bench_gemm" --threads "$threads" $quick | tee -a "$log"
echo "== ops_vs_torch"
if [[ -n "$quick" ]]; then runs=3; else runs=5; fi
/usr/bin/python3 "$here/ops_vs_torch.py" --build-dir "$build" --threads "$threads" --runs "$runs" | tee -a "$log"
echo "== conv_vs_torch"
/usr/bin/python3 "$here/conv_vs_torch.py" --build-dir "$build" --threads "$threads" --runs "$runs" | tee -a "$log"
echo "== translator step vs torch"
if [[ -n "$quick" ]]; then step_args=(--configs tiny --runs 3 --reps 3); else step_args=(--configs tiny,base --runs 3 --reps 3); fi
/usr/bin/python3 "$here/translator/step_vs_torch.py" --build-dir "$build" --threads "$threads" "${step_args[@]}" |
  tee -a "$log"
# Two ranks of one thread each, unbound so that each rank's MPI progress thread can run beside its compute.
mpirun=(mpirun --oversubscribe --allow-run-as-root --bind-to none -np 2 -x PARALLAX_NUM_THREADS=1 -x OMP_NUM_THREADS=1
        -x OPENBLAS_NUM_THREADS=1)
echo "== collective bandwidth (MPI process group vs blocking MPI, 2 ranks)"
if [[ -n "$quick" ]]; then max_bytes=$((16 << 20)); else max_bytes=$((256 << 20)); fi
"${mpirun[@]}" "$build/bench/parallel/bench_collective_bandwidth" --max-bytes "$max_bytes" | tee -a "$log"
echo "== dp overlap (2 ranks)"
if [[ -n "$quick" ]]; then reps=3; else reps=5; fi
"${mpirun[@]}" "$build/bench/parallel/bench_dp_overlap" --reps "$reps" | tee -a "$log"
echo "== summary (load now $(cut -d' ' -f1-3 /proc/loadavg))"
grep '^SUMMARY' "$log"
