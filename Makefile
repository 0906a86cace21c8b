# gan_lightning: `make train` and `make test` set everything up on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXP    ?= cgan_mnist5k
ARGS   ?=
CKPT   ?= $(shell ls -t runs/$(EXP)/*/checkpoints/last.ckpt 2>/dev/null | head -n 1)
NUM    ?= 1000
OUT    ?= runs/$(EXP)/samples.npz
PYTEST_ARGS ?=
SEEDS  ?= 0
GRID   ?=
SWEEP  ?=
PARALLEL ?= 1
RUNS   ?= runs/$(EXP)
ROWS   ?= 8
K      ?= 10
PNG_DIR ?= runs/$(EXP)/pngs
# MNIST / FashionMNIST in torchvision's raw layout (DATA/MNIST/raw/...), for the classifier and torchvision data.
DATA   ?= $(or $(GAN_LIGHTNING_DATA),data)

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast sample interpolate pngs evaluate classifier sweep report bench bench-gpu clean clean-runs

help:  ## List the targets.
	@grep -hE '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the package with its test tools.

train: $(STAMP)  ## Train an experiment: make train EXP=<name> ARGS="--trainer.max_steps=100".
	$(PY) -m gan_lightning fit --config experiments/$(EXP).yaml $(ARGS)

test: $(STAMP)  ## Run the test suite (CPU, no network).
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)  ## The test suite without the tests marked slow (about a minute on 2 cores).
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

sample: $(STAMP)  ## Draw samples: make sample EXP=<name> [CKPT=path] NUM=1000 OUT=file.npz ARGS="--grid g.png".
	@test -n "$(CKPT)" || { echo "error: no checkpoint under runs/$(EXP)/; run make train EXP=$(EXP) or pass CKPT=path"; exit 2; }
	$(PY) -m gan_lightning sample --ckpt_path $(CKPT) --num $(NUM) --out $(OUT) $(ARGS)

interpolate: $(STAMP)  ## Slerp rows between seeded samples: make interpolate EXP=<name> [CKPT=path] ROWS=8 K=10 ARGS="--truncation 0.7".
	@test -n "$(CKPT)" || { echo "error: no checkpoint under runs/$(EXP)/; run make train EXP=$(EXP) or pass CKPT=path"; exit 2; }
	$(PY) -m gan_lightning sample --ckpt_path $(CKPT) --num $(ROWS) --interpolate $(K) --out runs/$(EXP)/interpolate.npz --grid runs/$(EXP)/interpolate.png --grid_rows $(ROWS) $(ARGS)

pngs: $(STAMP)  ## One PNG per sample (and labels.csv) for FID tools: make pngs EXP=<name> [CKPT=path] NUM=10000 [PNG_DIR=dir].
	@test -n "$(CKPT)" || { echo "error: no checkpoint under runs/$(EXP)/; run make train EXP=$(EXP) or pass CKPT=path"; exit 2; }
	$(PY) -m gan_lightning sample --ckpt_path $(CKPT) --num $(NUM) --png_dir $(PNG_DIR) $(ARGS)

evaluate: $(STAMP)  ## Metrics of a run as JSON: make evaluate EXP=<name> [CKPT=path] ARGS="--num 10000 --devices 2".
	@test -n "$(CKPT)" || { echo "error: no checkpoint under runs/$(EXP)/; run make train EXP=$(EXP) or pass CKPT=path"; exit 2; }
	$(PY) -m gan_lightning evaluate --ckpt_path $(CKPT) --out $(dir $(CKPT))../evaluate.json $(ARGS)

classifier: $(STAMP)  ## Train the cached domain classifier for metrics: make classifier [DATA=dir] (or ARGS="--data FashionMNIST --root dir").
	$(PY) -m gan_lightning classifier $(or $(ARGS),--data MNIST --root $(DATA))

sweep: $(STAMP)  ## Sweep offline: make sweep EXP=toy_ring SEEDS="0 1 2" GRID="model.n_critic=1,2" [SWEEP=experiments/sweeps/x.yaml PARALLEL=2] ARGS="--trainer.max_steps=2000".
	$(PY) -m gan_lightning sweep $(if $(SWEEP),--sweep_file $(SWEEP),--config experiments/$(EXP).yaml) $(if $(filter-out file,$(origin SEEDS)),--seeds $(SEEDS),$(if $(SWEEP),,--seeds $(SEEDS))) $(foreach g,$(GRID),--grid $(g)) --parallel $(PARALLEL) $(ARGS)

report: $(STAMP)  ## Compare runs (tables, curves): make report RUNS="runs/toy_ring runs/toy_ring/sweep-x ..." (or EXP=name) [OUT=reports/x].
	$(PY) -m gan_lightning report $(RUNS) $(if $(filter-out file,$(origin OUT)),--out $(OUT)) $(ARGS)

bench: $(STAMP)  ## Benchmarks into BENCHMARKS.md (machine, command, date, tables, plots); ARGS="--quick" for a smoke run.
	$(PY) benchmarks/run.py $(ARGS)

bench-gpu: $(STAMP)  ## On a CUDA machine: every CUDA-marked test and the GPU throughput table, into BENCHMARKS.md.
	$(PY) benchmarks/gpu.py $(ARGS)

clean:  ## Remove caches, wandb/ and lightning_logs/ (keeps runs/ with its checkpoints, and .venv).
	rm -rf wandb lightning_logs .pytest_cache
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +

clean-runs:  ## Remove runs/: every run directory, checkpoints included.
	rm -rf runs
