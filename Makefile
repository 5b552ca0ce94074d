# selip: every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build on machines without a GPU; on a GPU cluster: make install TORCH=torch
TORCH ?= torch==2.13.0
DEMO_DIR ?= demo_data
DEMO_EXAMS ?= 200
# Extra `selip fit` options for the demo, e.g. DEMO_ARGS="--model.init_args.kl_weight 0"
DEMO_ARGS ?=
# Options of `make demo-downstream`, e.g. DOWNSTREAM_ARGS=--quick (3 seeds by default: hours)
DOWNSTREAM_ARGS ?=
# Test processes (pytest-xdist): tests are independent, so two workers keep two cores
# busy; 0 runs everything in one process. Each test process and every process it starts
# uses TEST_THREADS threads: more threads than cores spin against each other. worksteal: a
# worker that runs out takes tests queued for the other (with --dist load, the first worker
# was handed most of the slow tests up front and ended the run alone).
TEST_WORKERS ?= 2
TEST_THREADS ?= 1

# Nothing is ever fetched from a model hub: models load from local folders.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo demo-downstream test lint docs bench clean clean-demo

install: $(VENV)/.installed

# The rest is installed by uv, in seconds where pip takes minutes; by pip where uv fails
# (uv does not read pip.conf, so a mirror that only pip.conf names is pip's to reach).
# Both take the same version ranges from pyproject.toml and keep the torch already there.
# Bytecode: pip installs torch without compiling it (a minute, one file at a time), and
# each module is compiled when a process first imports it and kept for the next. Where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machine) nothing compiled at import is kept
# and every process would compile torch and Lightning anew, so make's commands run without
# it, and install imports once what selip's commands import. Compiling all of
# site-packages ahead (compileall -j 0) took 66 s on 2 cores, mostly for modules no
# process imports.
unexport PYTHONDONTWRITEBYTECODE
WARM_IMPORTS = selip.cli, selip.training.lightning_cli, selip.tasks, selip.inference, \
	selip.importer.command, selip.demo, selip.experiments.data_efficiency
define install_extra
$(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[$(1)]" \
	|| $(BIN)/python -m pip install --quiet -e ".[$(1)]"
endef

# Two steps: the packages (.deps-installed, enough for lint and the docs), then the first
# imports (.installed, one core for about 40 s on a fresh venv), which CI runs beside lint;
# the collector paused while they run, as selip's commands do (selip/startup.py).
$(VENV)/.deps-installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet --no-compile "$(TORCH)"
	$(call install_extra,dev)
	touch $@

$(VENV)/.installed: $(VENV)/.deps-installed
	$(BIN)/python -c "import gc; gc.disable(); import $(WARM_IMPORTS)"
	touch $@

demo: install
	test -f $(DEMO_DIR)/manifest.csv || $(BIN)/selip demo-data --out $(DEMO_DIR) --num-exams $(DEMO_EXAMS)
	$(BIN)/selip prepare --config configs/demo.yaml --data.manifest $(DEMO_DIR)/manifest.csv
	$(BIN)/selip fit --config configs/demo.yaml --data.manifest $(DEMO_DIR)/manifest.csv $(DEMO_ARGS)

# The data-efficiency table from the newest demo checkpoint (run `make demo` first).
DEMO_CKPT ?= $(shell ls -t runs/demo/*/checkpoints/last.ckpt 2>/dev/null | head -n 1)
demo-downstream: install
	@test -n "$(DEMO_CKPT)" || { echo "no runs/demo/*/checkpoints/last.ckpt: run make demo first"; exit 2; }
	$(BIN)/python -m selip.experiments.data_efficiency --encoder_ckpt $(DEMO_CKPT) $(DOWNSTREAM_ARGS)

test: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(VENV)/.deps-installed
	$(BIN)/ruff check selip tests benchmarks examples
	$(BIN)/mypy selip benchmarks

# The documentation site into site/ (mkdocs-material); --strict: a broken link or a
# missing page fails the build.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

$(VENV)/.docs-installed: $(VENV)/.deps-installed
	$(call install_extra,docs)
	touch $@

# Every CPU benchmark (about 25 minutes on 2 cores); each prints its ratios side by side.
# The SeLIP vs CLIP table itself (3 seeds, about an hour) and the GPU figures are separate:
#   $(BIN)/python benchmarks/learning.py --arms SeLIP CLIP SeLIP-fixed-scale
#   $(BIN)/python benchmarks/gpu.py
bench: install
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/step.py
	$(BIN)/python benchmarks/similarity.py
	$(BIN)/python benchmarks/similarity_presets.py
	$(BIN)/python benchmarks/demo_reports.py
	$(BIN)/python benchmarks/similarity_scale.py
	$(BIN)/python benchmarks/similarity_per_batch.py $$(test -f $(DEMO_DIR)/manifest.csv && echo --manifest $(DEMO_DIR)/manifest.csv)
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/eps_clamp.py
	$(BIN)/python benchmarks/learning.py --quick --arms SeLIP CLIP

clean-demo:
	rm -rf $(DEMO_DIR) .cache/selip

clean: clean-demo
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info site
