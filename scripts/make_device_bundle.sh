#!/usr/bin/env bash
# Packs what scripts/device_check.sh runs on the borrowed GPU machine, whose image lacks our Debian libraries, into
# .devbundle/bundle.tar.xz: binaries of a CUDA build, their shared libraries, Open MPI's mpirun, the Bible shards and
# a small set of Fashion-MNIST detection scenes.
#
# Usage: scripts/make_device_bundle.sh [BUILD_DIR]   (default: build; configured with nvcc present, so CUDA is on)
#   DATA=runs/data/bible_en_es  the translation shards to pack (make bible-data DATA=runs/data builds them)
# Layout of the archive (the build tree's, so step_vs_torch.py --build-dir works on it):
#   launcher/parallax, bench/bench_translator_step, tests/<the CUDA tests and comm_mpi_test>, lib/ (every shared
#   library they and mpirun load, less the machine's own), mpi/ (Open MPI's orterun and orted, its plugins
#   lib/x86_64-linux-gnu/openmpi/lib/openmpi3, PMIx's plugins and help files under lib/x86_64-linux-gnu/pmix2, the
#   help files share/openmpi; device_check.sh sets OPAL_PREFIX and PMIX_* to this folder), data/bible_en_es,
#   data/fashion_scenes (2,000 + 200 + 200 scenes made here from /usr/share/datasets/fashion-mnist), MANIFEST.
# It is xz-compressed with a 64 MiB dictionary, which stores the CUDA kernels the binaries share once: the working
# tree that travels (tracked + untracked files + .devbundle) must stay under 64 MiB; this script checks it.
# Not packed, found on the GPU machine instead:
#   glibc (libc, libm, libpthread, libdl, librt, ld-linux) and the CUDA driver (libcuda): the machine's own;
#   cuBLAS, cuBLASLt and NCCL: ~55, ~540 and ~210 MiB here, far over the budget; the machine's CUDA 13 image
#   has them, and device_check.sh looks them up there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
data=${DATA:-$repo/runs/data/bible_en_es}
bundle=$repo/.devbundle
limit_mib=64
gtests=(backend_ops_test ops_on_cuda_test caching_allocator_test deterministic_index_test multi_tensor_adamw_test
        nccl_test nccl_routed_test index_check_test pinned_memory_test device_batches_test translator_gpu_test
        checkpoint_test comm_mpi_test)
exes=(launcher/parallax bench/bench_translator_step "${gtests[@]/#/tests/}")
machine_libs='^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|linux-vdso|libcuda|libcublas|libcublasLt|libnccl)\.so'
# Ubuntu 24.04's glibc, which the GPU machine's image is based on.
machine_glibc=2.39
ompi_lib=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
pmix_root=/usr/lib/x86_64-linux-gnu/pmix2

for exe in "${exes[@]}"; do
  [[ -x $build/$exe ]] || { echo "missing $build/$exe: build it first (cmake --build $build --target ${exe##*/})" >&2; exit 1; }
done
ldd "$build/tests/backend_ops_test" | grep -q libcudart ||
  { echo "$build is not a CUDA build (backend_ops_test does not load libcudart): configure it with nvcc present" >&2; exit 1; }
[[ -f $data/dataset.pbtxt ]] || { echo "no shards in $data: make bible-data DATA=runs/data (or set DATA)" >&2; exit 1; }
for f in /usr/bin/orterun /usr/bin/orted "$ompi_lib" /usr/share/openmpi "$pmix_root/lib/pmix"; do
  [[ -e $f ]] || { echo "missing $f: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
done

stage=$(mktemp -d)
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{lib,launcher,bench,tests,data} "$stage"/mpi/{bin,share} \
  "$stage"/mpi/lib/x86_64-linux-gnu/openmpi/lib "$stage"/mpi/lib/x86_64-linux-gnu/pmix2/lib
for exe in "${exes[@]}"; do
  cp "$build/$exe" "$stage/$exe"
  strip --strip-unneeded "$stage/$exe"
done
# Open MPI: mpirun (orterun) and orted, every plugin (those whose libraries were missing would print warnings), the
# help files; PMIx's plugins and help files. Paths below mpi/ mirror /usr, which OPAL_PREFIX replaces.
cp -L /usr/bin/orterun /usr/bin/orted "$stage/mpi/bin/"
cp -a "$ompi_lib" "$stage/mpi/lib/x86_64-linux-gnu/openmpi/lib/"
cp -a /usr/share/openmpi "$stage/mpi/share/"
cp -a "$pmix_root/lib/pmix" "$stage/mpi/lib/x86_64-linux-gnu/pmix2/lib/"
cp -a "$pmix_root/share" "$stage/mpi/lib/x86_64-linux-gnu/pmix2/"
cp -a "$data" "$stage/data/bible_en_es"
"$build/launcher/parallax" data build-detection --fashion-mnist /usr/share/datasets/fashion-mnist \
  --out "$stage/data/fashion_scenes" --shards 2 --train-scenes 2000 --valid-scenes 200 --test-scenes 200 >/dev/null

# Every library the binaries and plugins load (ldd lists the whole closure), less the machine's own.
lddout=$(for f in "${exes[@]/#/$build/}" /usr/bin/orterun /usr/bin/orted "$ompi_lib"/*.so "$pmix_root"/lib/pmix/*.so; do
  ldd "$f"
done)
while read -r name path; do
  [[ $name =~ $machine_libs || -e $stage/lib/$name ]] && continue
  cp -L "$path" "$stage/lib/$name"
  chmod u+w "$stage/lib/$name"
  strip --strip-unneeded "$stage/lib/$name"
done < <(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$lddout")
if grep -q '=> not found' <<<"$lddout"; then
  echo "libraries not found here:" >&2
  grep '=> not found' <<<"$lddout" | sort -u >&2
  exit 1
fi
{
  echo "commit $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- . ':!.devbundle' || echo '+dirty'), built $(date -u +%FT%TZ) from $build"
  echo "data $data: $(du -sh "$data" | cut -f1)"
  echo "mpirun: $(orterun --version | head -1)"
} >"$stage/MANIFEST"

echo "left to the GPU machine: $(awk '$2 == "=>" {print $1}' <<<"$lddout" | sort -u | grep -E "$machine_libs" | tr '\n' ' ')"
echo "packed $(ls "$stage/lib" | wc -l) libraries ($(du -sh "$stage/lib" | cut -f1)), the largest:"
du -sh "$stage/lib"/* | sort -h | tail -5 | sed "s|$stage/||; s/^/  /"
du -sh "$stage"/{launcher,bench,tests,mpi} "$stage"/data/* | sed "s|$stage/||; s/^/  /"

# glibc: the newest symbol version anything in the bundle needs must not exceed the machine's.
here_glibc=$(ldd --version | awk 'NR == 1 {print $NF}')
symbols=$(find "$stage" -type f \( -name '*.so*' -o -perm -u+x \) -exec objdump -T {} + 2>/dev/null)
needed_glibc=$(grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' <<<"$symbols" | sed 's/GLIBC_//' | sort -uV | tail -1)
needed_glibcxx=$(grep -oE 'GLIBCXX_[0-9]+(\.[0-9]+)+' <<<"$symbols" | sort -uV | tail -1)
echo "glibc here: $here_glibc; newest GLIBC_ symbol the bundle needs: $needed_glibc (GPU machine: $machine_glibc)"
echo "newest GLIBCXX_ symbol the bundle needs: $needed_glibcxx (libstdc++ is packed)"
if [[ $(printf '%s\n%s\n' "$needed_glibc" "$machine_glibc" | sort -V | tail -1) != "$machine_glibc" ]]; then
  echo "the bundle needs glibc $needed_glibc, newer than the GPU machine's $machine_glibc" >&2
  exit 1
fi

rm -rf "$bundle"
mkdir -p "$bundle"
tar -C "$stage" -cf - . | xz -T1 -9 >"$bundle/bundle.tar.xz"
bundle_kib=$(du -sk "$bundle" | cut -f1)
# What else travels: tracked and untracked-not-ignored files of the checkout (shared/ included when it is there).
tree_kib=$(( $(cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
  awk '{s += $1} END {print int(s)}') / 1024 ))
echo "bundle: $(du -sh "$stage" | cut -f1) unpacked, $((bundle_kib / 1024)) MiB in $bundle/bundle.tar.xz;" \
  "with the working tree ($((tree_kib / 1024)) MiB) $(((bundle_kib + tree_kib) / 1024)) MiB of the ${limit_mib} MiB a run carries"
if (( bundle_kib + tree_kib > limit_mib * 1024 * 95 / 100 )); then
  echo "the working tree and $bundle are over 95% of ${limit_mib} MiB" >&2
  exit 1
fi
