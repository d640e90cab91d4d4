#!/bin/bash
# Builds the English-Spanish Bible corpus (KJV / Reina-Valera 1909, both public domain) from Debian's
# SWORD modules: OUTDIR/{train,valid,test}.{en,es}, split by book as data/corpora/README.md describes.
#
# Needs: libsword-utils (mod2imp), sword-text-kjv (module engKJV2006eb), sword-text-sparv (spaRV1909eb).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
outdir=$1
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v mod2imp > /dev/null; then
  echo "$0: mod2imp not found (apt install libsword-utils)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export_module() {  # MODULE PACKAGE FILE
  if ! mod2imp "$1" > "$3" 2> "$tmp/mod2imp.err"; then
    echo "$0: mod2imp cannot export $1 (apt install $2): $(head -n 1 "$tmp/mod2imp.err")" >&2
    exit 1
  fi
}
export_module engKJV2006eb sword-text-kjv "$tmp/en.imp"
export_module spaRV1909eb sword-text-sparv "$tmp/es.imp"

/usr/bin/python3 "$here/sword_to_text.py" "$tmp/en.imp" "$tmp/es.imp" "$outdir"
