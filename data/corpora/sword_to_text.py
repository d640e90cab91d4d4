#!/usr/bin/python3
# Pairs the verses of two SWORD `mod2imp` exports (OSIS markup) into a plain-text parallel corpus,
# split by book. Standard library only; run by bible_en_es.sh, which documents the inputs.
"""usage: sword_to_text.py SOURCE.imp TARGET.imp OUTDIR [--source-lang en] [--target-lang es]

Writes OUTDIR/{train,valid,test}.{en,es}: UTF-8, one verse per line, line k of .en and .es the same verse.
"""

import argparse
import html
import re
import sys
from pathlib import Path

# The split by book, as the exports name them. Everything else is train.
TEST_BOOKS = ("Ruth", "Jonah", "Philippians", "Mark")
VALID_BOOKS = ("Esther", "Micah", "Colossians", "I John")

# Chapters whose first verses in spaRV1909eb hold the end of the previous KJV chapter: Reina-Valera
# starts them a verse (Job 39: three) earlier, so every verse of them is paired with the wrong one.
# Found from the empty last verses of the chapters before them, checked by reading both texts.
SHIFTED_CHAPTERS = {("Numbers", 13), ("Numbers", 30), ("I Samuel", 24), ("Job", 39), ("Hosea", 12), ("Jonah", 2)}

VERSE_HEADER = re.compile(r"^\$\$\$(.+) (\d+):(\d+)$")
OTHER_HEADER = re.compile(r"^\$\$\$")  # module and testament headings

# Removed with their content: footnotes and cross-references, and the titles that are not verse text
# (book headings, Psalm 119's acrostic letters, the KJV's epistle subscriptions). Psalm superscriptions
# (<title canonical="true" type="psalm">) are kept: Reina-Valera has them as plain text in verse 1.
NOTE = re.compile(r"<note\b[^>]*>.*?</note>|<note\b[^>]*/>", re.S)
NON_CANONICAL_TITLE = re.compile(r'<title\b(?![^>]*canonical="true")[^>]*>.*?</title>', re.S)
# USFM markers that osis2mod left unconverted in the KJV (`\nd LORD\+nd*`, the divine name).
USFM_MARKER = re.compile(r"\\\+?[a-z]+[0-9]*\*?")
# Elements that mark structure (paragraphs, poetry lines, chapters) separate words; the others
# (<w>, <transChange>, <divineName>, <q>, <seg>, <foreign>) sit inside text and vanish.
STRUCTURE_TAG = re.compile(r"</?(?:div|l|lg|lb|chapter|milestone|p)\b[^>]*>")
ANY_TAG = re.compile(r"<[^>]*>")
PILCROW = "\u00b6"  # the KJV's paragraph marks
WHITESPACE = re.compile(r"\s+")
# What markup or Strong's numbers would look like if any survived.
LEAK = re.compile(r"[<>\\]|strong:[GH]|lemma=|\b[GH]\d{3,4}\b|&\w+;")

# Reina-Valera's module often closes one word element and opens the next with no space between them
# ("alabanza</w><transChange>será"). Most such joins are two words; some are a verb and an enclitic
# pronoun written as one word ("sáca</w><w>lo" is "sácalo").
ADJACENT_WORDS = re.compile(
    r"(\w+)((?:</(?:w|transChange|divineName)>)+(?:<(?:w|transChange|divineName)\b[^>]*>)+)(?=(\w+))")
ENCLITICS = {"me", "te", "se", "nos", "os", "lo", "la", "los", "las", "le", "les"}
SHORT_VERBS = {"da", "di", "dí", "haz", "ve", "ven", "pon", "ten", "sal", "vi", "vió", "dió"}
ACCENT_BEFORE_LAST_SYLLABLE = re.compile(r"[áéíóú].*[aeiouáéíóúü]+[^aeiouáéíóúü]*$")
# Accented words that are not verbs, found by reviewing every join in spaRV1909eb.
NOT_VERBS = {"éste", "ésta", "éstos", "éstas", "ése", "ésa", "cuánto", "cuánta", "cuántos", "cuántas", "sólo",
             "ejército"}


def takes_enclitic(word):
    """Whether a Spanish word looks like a verb form that an enclitic pronoun attaches to."""
    w = word.lower()
    if w in NOT_VERBS:
        return False
    if w in SHORT_VERBS or w.endswith(("r", "d", "ndo")):
        return True
    # A written accent before the last syllable: Spanish adds one when a pronoun is attached (sácalo).
    return ACCENT_BEFORE_LAST_SYLLABLE.search(w) is not None


def separate_adjacent_words(raw):
    def fix(m):
        before, tags, after = m.group(1), m.group(2), m.group(3)
        joined = after.lower() in ENCLITICS and takes_enclitic(before)
        return before + tags + ("" if joined else " ")

    return ADJACENT_WORDS.sub(fix, raw)


def clean(raw, where):
    """Verse text without markup; exits naming the verse if anything tag-like survives."""
    text = separate_adjacent_words(raw)
    text = NOTE.sub("", text)
    text = NON_CANONICAL_TITLE.sub("", text)
    text = USFM_MARKER.sub("", text)
    text = STRUCTURE_TAG.sub(" ", text)
    text = ANY_TAG.sub("", text)
    text = html.unescape(text).replace(PILCROW, " ")
    text = WHITESPACE.sub(" ", text).strip()
    leak = LEAK.search(text)
    if leak:
        sys.exit(f"{where}: markup survived cleaning ({leak.group()!r}): {text}")
    return text


def read_verses(path):
    """{(book, chapter, verse): text} for chapter, verse >= 1, in the export's order."""
    verses = {}
    key, lines = None, []

    def flush():
        if key is not None:
            verses[key] = clean(" ".join(lines), f"{path}: {key[0]} {key[1]}:{key[2]}")

    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            header = VERSE_HEADER.match(line)
            if header or OTHER_HEADER.match(line):
                flush()
                key, lines = None, []
                if header and int(header.group(2)) >= 1 and int(header.group(3)) >= 1:
                    key = (header.group(1), int(header.group(2)), int(header.group(3)))
            elif key is not None:
                lines.append(line)
    flush()
    return verses


def split_of(book):
    if book in TEST_BOOKS:
        return "test"
    if book in VALID_BOOKS:
        return "valid"
    return "train"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("outdir")
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="es")
    args = parser.parse_args()

    source, target = read_verses(args.source), read_verses(args.target)
    books = {book for book, _, _ in source}
    missing = [b for b in TEST_BOOKS + VALID_BOOKS if b not in books]
    if missing:
        sys.exit(f"{args.source}: no verses of {', '.join(missing)}; the split names books as the export does")

    # A verse that is empty or missing on either side means the versifications part ways in that
    # chapter (the Spanish text is merged and shifted within it): the whole chapter is dropped.
    keys = list(source)  # canonical order
    misaligned = {k[:2] for k in keys if not (source[k] and target.get(k))} | SHIFTED_CHAPTERS
    pairs = {"train": [], "valid": [], "test": []}
    for key in keys:
        if key[:2] not in misaligned:
            pairs[split_of(key[0])].append((source[key], target[key]))

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in pairs.items():
        for lang, column in ((args.source_lang, 0), (args.target_lang, 1)):
            with open(out / f"{split}.{lang}", "w", encoding="utf-8", newline="\n") as f:
                f.writelines(row[column] + "\n" for row in rows)
    for split, rows in pairs.items():
        print(f"{split}: {len(rows)} pairs")
    dropped = sum(1 for k in keys if k[:2] in misaligned)
    print(f"total: {sum(len(r) for r in pairs.values())} pairs; {dropped} verses of {len(misaligned)} "
          f"chapters dropped where the versifications differ")


if __name__ == "__main__":
    main()
