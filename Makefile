# Thin wrapper over CMake: installs missing Debian packages, configures, builds with every core, runs.
# `make demo` runs the main job; `make test` runs the whole test suite (what CI runs).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build demo test bench data clean

deps:
	bash scripts/install_deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	./$(BUILD)/launcher/parallax demo

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# The real datasets: the English-Spanish Bible (shards + SentencePiece) and Fashion-MNIST scenes.
DATA ?= runs/data
data: build
	bash data/corpora/bible_en_es.sh $(DATA)/bible_text
	./$(BUILD)/launcher/parallax data build-translation --out $(DATA)/bible_en_es --shards 4 --vocab-size 8000 \
	  --src $(DATA)/bible_text/train.en --tgt $(DATA)/bible_text/train.es \
	  --valid-src $(DATA)/bible_text/valid.en --valid-tgt $(DATA)/bible_text/valid.es \
	  --test-src $(DATA)/bible_text/test.en --test-tgt $(DATA)/bible_text/test.es
	./$(BUILD)/launcher/parallax data build-detection --fashion-mnist /usr/share/datasets/fashion-mnist \
	  --out $(DATA)/fashion_scenes --shards 8

bench: build
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
