# A synthetic parallel corpus for the command-line tests: English digit words -> Spanish digit words, 3 to 7
# words a line, from a fixed LCG. Usage: digit_corpus.py OUT_DIR SEED TRAIN VALID TEST (lines per split).
import sys

out, seed = sys.argv[1], int(sys.argv[2])
sizes = {"train": int(sys.argv[3]), "valid": int(sys.argv[4]), "test": int(sys.argv[5])}
en = "zero one two three four five six seven eight nine".split()
es = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
state = seed


def draw():
    global state
    state = (state * 1103515245 + 12345) % 2**31
    return state >> 8


for split, n in sizes.items():
    with open(f"{out}/{split}.en", "w") as f_en, open(f"{out}/{split}.es", "w") as f_es:
        for _ in range(n):
            digits = [draw() % 10 for _ in range(3 + draw() % 5)]
            f_en.write(" ".join(en[d] for d in digits) + "\n")
            f_es.write(" ".join(es[d] for d in digits) + "\n")
