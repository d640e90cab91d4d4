#!/usr/bin/env bash
# The GPU check run on the borrowed GPU machine from the repo root with .devbundle carried (made here by
# scripts/make_device_bundle.sh): every CUDA kernel against the CPU reference kernels (backend_ops_test's op table),
# the CUDA caching allocator (caching_allocator_test), the NCCL group (nccl_test), the NCCL-routed group with its
# stream waits, watchdog and GradBucketer (nccl_routed_test) and host-checked device ids (index_check_test).
#
# Unpacks .devbundle/bundle.tar.xz into a temporary folder (so .devbundle stays small enough to carry), writes
# env.txt and one <test>.log per test under $OUT when it is set (else under /tmp/parallax-device-check), and exits
# non-zero when a library is missing, a test fails, or a test is skipped although nvidia-smi lists a GPU.
# Each test has 150 s; the whole check takes well under 5 minutes. Here (no GPU) every GPU test skips: exit 0.
set -uo pipefail
cd "$(dirname "$0")/.."

archive=.devbundle/bundle.tar.xz
out=${OUT:-${TMPDIR:-/tmp}/parallax-device-check}
mkdir -p "$out"
tests=(backend_ops_test caching_allocator_test nccl_test nccl_routed_test index_check_test)
# Not packed (too large): taken from the machine's CUDA 13 image.
machine_libs=(libcublas.so.13 libcublasLt.so.13 libnccl.so.2)

[[ -f $archive ]] || { echo "no $archive: run scripts/make_device_bundle.sh and carry .devbundle" >&2; exit 2; }
bundle=$(mktemp -d "${TMPDIR:-/tmp}/parallax-devbundle.XXXXXX")
trap 'rm -rf "$bundle"' EXIT
if command -v xz >/dev/null; then
  tar -C "$bundle" -xJf "$archive"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$bundle"
fi || { echo "could not unpack $archive" >&2; exit 2; }

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
library_path=$bundle/lib
for name in "${machine_libs[@]}"; do
  dir=$(find_lib_dir "$name")
  [[ -n $dir && :$library_path: != *:$dir:* ]] && library_path=$library_path:$dir
done
export LD_LIBRARY_PATH=$library_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GLOG_logtostderr=1 PARALLAX_NUM_THREADS=${PARALLAX_NUM_THREADS:-8}
# One process: NCCL's bootstrap needs no network beyond loopback (the machine may have no other interface),
# and its warnings belong in the logs.
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} NCCL_DEBUG=${NCCL_DEBUG:-WARN}

gpu_listed=0
{
  echo "== nvidia-smi -L"
  if nvidia-smi -L; then gpu_listed=1; fi
  echo "== glibc: $(ldd --version | awk 'NR == 1')"
  echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for t in "${tests[@]}"; do
    echo "== ldd $t"
    ldd "$bundle/$t"
  done
} >"$out/env.txt" 2>&1
# nvidia-smi writes "GPU 0: ..." lines only when it sees a GPU.
grep -q '^GPU [0-9]' "$out/env.txt" || gpu_listed=0
grep -E '^== nvidia|^GPU|^== glibc|^== LD_' "$out/env.txt"
echo "machine-provided libraries:"
grep -E "$(IFS='|'; echo "${machine_libs[*]}")|libcudart" "$out/env.txt" | sed 's/ (0x[0-9a-f]*)$//; s/^[[:space:]]*/  /' |
  sort -u
if grep -q '=> not found' "$out/env.txt"; then
  echo "missing libraries:" >&2
  grep '=> not found' "$out/env.txt" | sort -u >&2
  exit 2
fi

status=0
for t in "${tests[@]}"; do
  echo "== $t"
  start=$SECONDS
  timeout 150 "$bundle/$t" --gtest_brief=1 >"$out/$t.log" 2>&1
  rc=$?
  # The GPU and NCCL seen, then the summary (the log's end when it failed); the whole output is in the log.
  grep -m1 'CUDA: ' "$out/$t.log"
  grep -m1 '] NCCL [0-9]' "$out/$t.log"
  if (( rc != 0 )); then tail -n 60 "$out/$t.log"; else grep -E '^\[  (PASSED|SKIPPED) |^\[==========\]' "$out/$t.log"; fi
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+' "$out/$t.log" | grep -oE '[0-9]+$' | head -1)
  echo "$t: exit $rc in $((SECONDS - start)) s${skipped:+, $skipped skipped}"
  if (( rc != 0 )); then
    (( rc == 124 )) && echo "$t: killed after 150 s" >&2
    status=1
  elif (( gpu_listed && ${skipped:-0} > 0 )); then
    echo "$t: tests were skipped although nvidia-smi lists a GPU" >&2
    status=1
  fi
done
echo "device check: $([[ $status == 0 ]] && echo PASSED || echo FAILED) (logs in $out)"
exit $status
