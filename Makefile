# Thin wrapper over CMake: installs missing Debian packages, configures, builds with every core, runs.
# `make demo` runs the main job; `make test` runs the whole test suite (what CI runs).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build demo test bench data bible-data clean

deps:
	bash scripts/install_deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# The main job: the English->Spanish Bible shards (built once), the tiny translator trained for 15 CPU
# minutes into a fresh run dir, then its test BLEU with beam 4 and a few translations.
DEMO_STAMP := $(shell date +%Y%m%d-%H%M%S)
DEMO_RUN ?= runs/demo/$(DEMO_STAMP)
demo: build
	@test -f $(DATA)/bible_en_es/dataset.pbtxt || $(MAKE) --no-print-directory bible-data
	./$(BUILD)/launcher/parallax train configs/translator_bible_tiny.pbtxt --run-dir $(DEMO_RUN) \
	  --set data.dir=$(DATA)/bible_en_es
	./$(BUILD)/launcher/parallax eval --run-dir $(DEMO_RUN) --split test --beam 4 --show 5
	@echo "translate your own sentences: ./$(BUILD)/launcher/parallax translate --run-dir $(DEMO_RUN)"

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# The real datasets: the English-Spanish Bible (shards + SentencePiece) and Fashion-MNIST scenes.
DATA ?= runs/data
data: bible-data
	./$(BUILD)/launcher/parallax data build-detection --fashion-mnist /usr/share/datasets/fashion-mnist \
	  --out $(DATA)/fashion_scenes --shards 8

bible-data: build
	bash data/corpora/bible_en_es.sh $(DATA)/bible_text
	./$(BUILD)/launcher/parallax data build-translation --out $(DATA)/bible_en_es --shards 4 --vocab-size 8000 \
	  --src $(DATA)/bible_text/train.en --tgt $(DATA)/bible_text/train.es \
	  --valid-src $(DATA)/bible_text/valid.en --valid-tgt $(DATA)/bible_text/valid.es \
	  --test-src $(DATA)/bible_text/test.en --test-tgt $(DATA)/bible_text/test.es

bench: build
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
