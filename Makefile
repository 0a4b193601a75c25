# Sentinel Densify: install, test, demo, bench, package.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PKGS := python3-qgis qgis-providers python3-rasterio python3-venv python3-pip python3-scipy \
            python3-matplotlib python3-pil
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install apt venv test lint demo eval bench model package deploy clean

install: apt venv ## apt packages, .venv with system site packages, pinned pip requirements, `densify`
	@echo "installed: $(VENV)/bin/densify"

apt:
	@if ! dpkg -s $(APT_PKGS) >/dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PKGS); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt scripts/link_package.py
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q $(WHEELS) -r requirements.txt -c constraints.txt
	$(PY) scripts/link_package.py
	touch $@

test: ## the whole suite, headless
	$(PY) -m pytest -q tests

lint:
	$(VENV)/bin/ruff check .

demo: ## the main job on the shared data (or a synthetic scene), outputs and a quick-look in demo_out/
	$(VENV)/bin/densify demo --out demo_out

DATA := ../shared/data/worldcereal-31UDS-2017
eval: ## the evaluation protocol (EVALUATION.md) on the real series; report in eval_out/
	$(VENV)/bin/densify evaluate --s2 $(DATA)/S2 --s1 $(DATA)/S1 --methods linear,nearest,persistence --out eval_out

bench: ## throughput and peak memory of `densify run` (linear, and the bundled model when present)
	$(PY) bench/bench.py --methods linear$(if $(wildcard models/default.onnx),$(comma)default,) --series 4

comma := ,

model: ## retrain models/default.onnx on the shared data, with its evaluation, figure and card (~40 min, 2 CPU cores)
	DATA=$(DATA) bash scripts/build_default_model.sh

package: ## zip for QGIS "Install from ZIP"
	$(PY) scripts/package.py dist/sentinel_densify.zip

PROFILE ?= default
QGIS_PLUGINS ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/$(PROFILE)/python/plugins
deploy: ## link the checkout into a QGIS profile (PROFILE=default, or QGIS_PLUGINS=folder)
	@dest="$(QGIS_PLUGINS)/sentinel_densify"; \
	if [ -e "$$dest" ] && [ ! -L "$$dest" ]; then \
	  echo "deploy: $$dest is a folder (a ZIP install?), not a link: remove it first" >&2; exit 1; fi; \
	mkdir -p "$(QGIS_PLUGINS)" && ln -sfn "$(CURDIR)" "$$dest" && echo "linked $$dest -> $(CURDIR)"

clean:
	rm -rf $(VENV) dist demo_out eval_out .pytest_cache
