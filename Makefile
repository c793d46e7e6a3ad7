# m3bert: `make help` lists the targets.
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
# Pins torch to the CPU build; `make install CONSTRAINTS=` keeps a torch you installed yourself (e.g. a CUDA build).
CONSTRAINTS ?= .ci/constraints.txt
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: ## Install m3bert and its test dependencies (pip, editable), and FluidSynth for the demo corpus (apt)
	@ldconfig -p 2>/dev/null | grep -q libfluidsynth || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfluidsynth3; \
	  else \
	    echo "FluidSynth is missing: install libfluidsynth3 (Debian/Ubuntu, as root), fluid-synth (Homebrew)"; \
	  fi; }
	$(PYTHON) -m pip install $(if $(CONSTRAINTS),-c $(CONSTRAINTS),) -e ".[dev,demo]"

.PHONY: smoke
smoke: ## Pre-train a tiny model on generated features for 20 steps (seconds)
	$(PYTHON) -m m3bert.train +experiment=smoke

.PHONY: demo
demo: ## The study pipeline's tour of the embedded demo corpus (QUICK=1: small corpus, about 3.5 minutes; default about 26)
	$(PYTHON) -m m3bert.reproduce scale=$(if $(QUICK),tour_quick,tour)

.PHONY: reproduce-paper
reproduce-paper: ## The paper's study, resumable: prepare, pre-train, fine-tune x 3 seeds, report (SCALE=demo, DRY_RUN=1, STAGES=...)
	$(PYTHON) -m m3bert.reproduce $(if $(SCALE),scale=$(SCALE),) $(if $(DRY_RUN),dry_run=$(DRY_RUN),) \
	  $(if $(STAGES),'stages=[$(STAGES)]',) $(if $(SEEDS),'seeds=[$(SEEDS)]',)

# Where `make real-music` puts the audio (with the .debs) and the prepared folders.
REAL_MUSIC_AUDIO ?= $(or $(M3BERT_AUDIO),audio)/real_music
REAL_MUSIC_DATA ?= $(or $(M3BERT_DATA),data)/real_music

.PHONY: real-music
real-music: ## Optional, Debian/Ubuntu: game soundtracks (apt-get download) -> probe set + pre-training corpus (PRETRAIN=pkg,...)
	$(PYTHON) -m m3bert.adapters.real_music out=$(REAL_MUSIC_AUDIO) $(if $(PRETRAIN),'pretrain=[$(PRETRAIN)]',)
	for role in probe pretrain; do \
	  $(PYTHON) -m m3bert.prepare dataset=folder dataset.root=$(REAL_MUSIC_AUDIO)/$$role \
	    dataset.source.labels=$(REAL_MUSIC_AUDIO)/$${role}_labels.csv out=$(REAL_MUSIC_DATA)/$$role \
	    clip.policy=segments progress=false || exit 1; \
	done

.PHONY: lint
lint: ## Lint and check formatting (ruff); `ruff format m3bert tests benchmarks` fixes the formatting
	$(PYTHON) -m ruff check m3bert tests benchmarks
	$(PYTHON) -m ruff format --check m3bert tests benchmarks

.PHONY: test
test: ## Run the default test suite (minutes on 2 cores)
	$(PYTEST) -q

.PHONY: test-slow
test-slow: ## Run only the slow tests
	$(PYTEST) -q -m slow

.PHONY: test-gpu
test-gpu: ## Run only the tests that need CUDA
	$(PYTEST) -q -m gpu

.PHONY: bench
bench: ## Benchmarks; results go to bench-results/*.json
	$(PYTHON) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS),) -e ".[bench]"
	$(PYTHON) -m benchmarks --out bench-results

.PHONY: clean
clean: ## Remove caches and run outputs (experiments/ and multirun/ keep their READMEs)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache bench-results
	find experiments multirun -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
