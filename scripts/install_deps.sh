#!/usr/bin/env bash
# Installs Parallax's build and test dependencies from Debian packages.
# Idempotent: installs only what is missing; uses sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  protobuf-compiler libprotobuf-dev
  libgoogle-glog-dev libgflags-dev
  libgtest-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libpugixml-dev
  libsentencepiece-dev sentencepiece
  libpng-dev libjpeg-dev zlib1g-dev
  python3 python3-torch python3-numpy python3-h5py python3-sentencepiece python3-scipy python3-pip
  # data: the corpora and fixtures (data/corpora/, tests/data/)
  libsword-utils sword-text-kjv sword-text-sparv
  dataset-fashion-mnist labelme-examples
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Test oracles Debian does not package, from PyPI into Debian's python3 (the one the tests run). Best effort:
# without PyPI the tests that need them skip with one line saying so.
PIP_PACKAGES=(pycocotools)
for p in "${PIP_PACKAGES[@]}"; do
  if ! /usr/bin/python3 -c "import $p" 2>/dev/null; then
    echo "install_deps: pip installing $p"
    $SUDO /usr/bin/python3 -m pip install -q --break-system-packages "$p" \
      || echo "install_deps: could not pip install $p (no PyPI?); the tests that need it will skip"
  fi
done
