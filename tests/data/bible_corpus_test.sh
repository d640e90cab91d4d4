#!/usr/bin/env bash
# The real English-Spanish Bible corpus end to end: SWORD modules -> text (split by book, no markup
# left) -> SentencePiece + shards -> verify, and decoded examples equal the normalised text.
set -euo pipefail
PARALLAX=$1
SRC=$2
if ! command -v mod2imp >/dev/null || [ ! -e /usr/share/sword/mods.d/engKJV2006eb.conf ]; then
  echo "SKIP: libsword-utils / sword-text-kjv not installed"; exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
bash "$SRC/data/corpora/bible_en_es.sh" "$WORK/text"
for split in train valid test; do
  en=$(wc -l <"$WORK/text/$split.en"); es=$(wc -l <"$WORK/text/$split.es")
  [ "$en" -eq "$es" ] || { echo "FAIL: $split has $en English and $es Spanish lines"; exit 1; }
  echo "$split: $en pairs"
done
total=$(cat "$WORK"/text/*.en | wc -l)
[ "$total" -gt 29000 ] || { echo "FAIL: only $total pairs"; exit 1; }
if grep -lE '<|>|strong:[GH][0-9]|lemma=|osisID' "$WORK"/text/*; then echo "FAIL: markup left in the text"; exit 1; fi

"$PARALLAX" data build-translation --src "$WORK/text/train.en" --tgt "$WORK/text/train.es" \
  --valid-src "$WORK/text/valid.en" --valid-tgt "$WORK/text/valid.es" \
  --test-src "$WORK/text/test.en" --test-tgt "$WORK/text/test.es" --out "$WORK/shards" --shards 4 --vocab-size 8000
"$PARALLAX" data inspect "$WORK/shards" --verify
out=$("$PARALLAX" data inspect "$WORK/shards" --examples 1)
echo "$out" | head -40
first_en=$(head -1 "$WORK/text/train.en" | tr -s ' \t' ' ' | sed 's/^ //; s/ $//')
grep -qF -- "[0] $first_en" <<<"$out" || { echo "FAIL: first example does not decode to '$first_en'"; exit 1; }
echo "ok"
