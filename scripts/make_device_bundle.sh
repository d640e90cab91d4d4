#!/usr/bin/env bash
# Packs the GPU test binaries of a CUDA build (backend_ops_test, caching_allocator_test, nccl_test, nccl_routed_test,
# index_check_test) and the shared libraries they need into .devbundle/bundle.tar.xz for the borrowed GPU machine,
# whose image lacks our Debian libraries.
#
# Usage: scripts/make_device_bundle.sh [BUILD_DIR]   (default: build-gpu, configured with PARALLAX_CUDA=ON)
# The archive holds those binaries and lib/; scripts/device_gpu_check.sh unpacks it into .devbundle/
# there. It is compressed because unpacked it is ~66 MiB (OpenBLAS's kernels for every CPU alone are 35 MiB),
# more than the 64 MiB the working tree may take to the machine; packed it is ~11 MiB.
# Not packed, found on the GPU machine instead:
#   glibc (libc, libm, libpthread, libdl, librt, ld-linux) and the CUDA driver (libcuda): the machine's own;
#   cuBLAS, cuBLASLt and NCCL: ~55, ~540 and ~210 MiB here, far over the budget; the machine's CUDA 13 image
#   has them, and device_gpu_check.sh looks them up there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build-gpu}
bundle=$repo/.devbundle
limit_mib=60
tests=(backend_ops_test caching_allocator_test nccl_test nccl_routed_test index_check_test)
machine_libs='^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|linux-vdso|libcuda|libcublas|libcublasLt|libnccl)\.so'
# Ubuntu 24.04's glibc, which the GPU machine's image is based on.
machine_glibc=2.39

for t in "${tests[@]}"; do
  [[ -x $build/tests/$t ]] || { echo "missing $build/tests/$t: build it first (cmake --build $build --target $t)" >&2; exit 1; }
done

stage=$(mktemp -d)
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib"
for t in "${tests[@]}"; do
  cp "$build/tests/$t" "$stage/$t"
  strip --strip-unneeded "$stage/$t"
done

# Every library the binaries load (ldd lists the whole closure), less the machine's own.
lddout=$(for t in "${tests[@]}"; do ldd "$build/tests/$t"; done)
while read -r name path; do
  [[ $name =~ $machine_libs || -e $stage/lib/$name ]] && continue
  cp -L "$path" "$stage/lib/$name"
  chmod u+w "$stage/lib/$name"
  strip --strip-unneeded "$stage/lib/$name"
done < <(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$lddout")

echo "left to the GPU machine: $(awk '$2 == "=>" {print $1}' <<<"$lddout" | sort -u | grep -E "$machine_libs" | tr '\n' ' ')"
echo "packed $(ls "$stage/lib" | wc -l) libraries:"
du -sh "$stage/lib"/* | sort -h | sed "s|$stage/||; s/^/  /"

# glibc: the newest symbol version anything in the bundle needs must not exceed the machine's.
here_glibc=$(ldd --version | awk 'NR == 1 {print $NF}')
symbols=$(find "$stage" -type f -exec objdump -T {} +)
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
tar -C "$stage" -cf - . | xz -T2 -6 >"$bundle/bundle.tar.xz"
echo "bundle: $(du -sh "$stage" | cut -f1) unpacked, $(du -sh "$bundle/bundle.tar.xz" | cut -f1) in $bundle/bundle.tar.xz"
if (( $(du -sk "$bundle" | cut -f1) > limit_mib * 1024 )); then
  echo "$bundle is over ${limit_mib} MiB" >&2
  exit 1
fi
