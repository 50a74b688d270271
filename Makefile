# Two commands from a fresh clone: `make run` and `make test`. Needs only python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) run.py serve

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) run.py bench

clean:
	rm -rf $(VENV) var .pytest_cache

# The console's browser tests drive Debian's chromium (tests/browser): `make test` installs it
# when missing, where apt-get is available and we are root; elsewhere those tests are skipped.
.PHONY: chromium screenshots
test: chromium

chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null) \
	  || echo "chromium not installed: the browser tests will be skipped"; }

# docs/screenshots/*.png, taken by the browser tests
screenshots: $(STAMP) chromium
	CHORUS_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/browser
