# Two entry points: `make demo` (the main job) and `make test`.
# Both create or reuse .venv/ and install what is missing; safe to re-run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := fashion-mnist-demo
ZOO ?= zoo/store
RESULTS ?= results/$(DEMO)
REPORT ?= reports/$(DEMO)

.PHONY: demo test paper paper-long setup system bench clean-venv

$(STAMP): pyproject.toml scripts/setup_env.sh scripts/check_robustbench.py
	bash scripts/setup_env.sh $(PYTHON) $(VENV)
	touch $(STAMP)

setup: $(STAMP)

# Debian packages: Fashion-MNIST (the embedded data set) and headless Chromium.
system:
	bash scripts/system_deps.sh

# The main job: train the demo zoo, evaluate it, write the report and leaderboard.
demo: setup system
	$(PY) -m robustmix data prepare fashion-mnist
	$(PY) -m robustmix train zoo/$(DEMO).toml --out $(ZOO)
	$(PY) -m robustmix eval evals/$(DEMO).toml --store $(ZOO) --results $(RESULTS)
	$(PY) -m robustmix report $(RESULTS) --out $(REPORT)
	$(PY) -m robustmix export $(RESULTS) --leaderboard $(REPORT)/leaderboard.csv --threat-model Linf --eps 8/255

# The paper's claims at Fashion-MNIST scale on a CPU: trains, evaluates, verdicts.
paper: setup system
	$(PY) -m robustmix data prepare fashion-mnist
	$(PY) -m robustmix reproduce paper --out reports/paper

# The same study at the scale the 60-minute one cannot afford (hours on a CPU; every step resumes).
paper-long: setup system
	$(PY) -m robustmix data prepare fashion-mnist
	$(PY) -m robustmix reproduce paper --long --out reports/paper-long

# Tests that need the Debian packages skip (with the reason) when they cannot be installed.
test: setup
	-bash scripts/system_deps.sh
	$(PY) -m pytest -q

# Benchmarks print robustmix's figures next to a reference in one run (CPU sizes).
bench: setup system
	$(PY) -m robustmix data prepare fashion-mnist
	$(PY) bench/train_throughput.py
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_report.py
	$(PY) -m robustmix train zoo/$(DEMO).toml --out $(ZOO)   # the demo zoo (reused when trained)
	$(PY) bench/bench_corruption_cache.py --store $(ZOO)

clean-venv:
	rm -rf $(VENV)
