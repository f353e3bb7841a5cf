# Two entry points: `make demo` (the main job) and `make test`.
# Both create or reuse .venv/ and are safe to re-run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_ROOT ?= data

.PHONY: demo test setup data clean-venv

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(PYTHON) $(VENV)
	touch $(STAMP)

setup: $(STAMP)

data: setup
	$(PY) -m robustmix data prepare fashion-mnist --root $(DATA_ROOT)

demo: data
	$(PY) -m robustmix train zoo/fashion-mnist-demo.toml

test: setup
	bash scripts/system_deps.sh || true
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
