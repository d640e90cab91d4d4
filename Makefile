# Thin wrapper over CMake: installs missing Debian packages, configures, builds with every core, runs.
# `make demo` runs the main job, `make demo-detr` DETR's; `make test` runs the whole test suite (what CI runs).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build demo demo-detr test bench data bible-data fashion-data clean

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

# DETR: the Fashion-MNIST scenes (built once), configs/detr_fashion_tiny.pbtxt trained into a fresh run dir for
# DETR_MINUTES (the config's 60 by default), its COCO metrics on the test split, then `parallax detect` on 4 test
# scenes (written without their boxes to <run>/scenes/): JSON and annotated PNGs in <run>/detect/.
DETR_MINUTES ?= 60
DEMO_DETR_RUN ?= runs/demo-detr/$(DEMO_STAMP)
demo-detr: build
	@test -f $(DATA)/fashion_scenes/dataset.pbtxt || $(MAKE) --no-print-directory fashion-data
	./$(BUILD)/launcher/parallax train configs/detr_fashion_tiny.pbtxt --run-dir $(DEMO_DETR_RUN) \
	  --set data.dir=$(DATA)/fashion_scenes --set train.max_minutes=$(DETR_MINUTES)
	./$(BUILD)/launcher/parallax eval --run-dir $(DEMO_DETR_RUN) --split test
	./$(BUILD)/launcher/parallax data inspect $(DATA)/fashion_scenes --examples 4 --no-boxes \
	  --png-dir $(DEMO_DETR_RUN)/scenes >/dev/null
	./$(BUILD)/launcher/parallax detect --run-dir $(DEMO_DETR_RUN) $(DEMO_DETR_RUN)/scenes/test_*.png
	@echo "detect your own images: ./$(BUILD)/launcher/parallax detect --run-dir $(DEMO_DETR_RUN) IMAGE..."

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# The real datasets: the English-Spanish Bible (shards + SentencePiece) and Fashion-MNIST scenes.
DATA ?= runs/data
data: bible-data fashion-data

fashion-data: build
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
