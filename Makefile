# Schoolbell: `make run` serves the demo school, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SCHOOLBELL_ENV ?= development
CHROMIUM_PATH ?= /usr/bin/chromium

.PHONY: run install install-test browser test lint migrate seed bench clean translations compile-translations

# Translations (webapp/i18n.py): each .po is compiled into its .mo, a build product.
PO_FILES := $(wildcard webapp/translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)
POT := webapp/translations/messages.pot

run: install migrate seed $(MO_FILES) ## Install, migrate, load the demo school, serve on :8000
	@echo "Schoolbell on http://127.0.0.1:8000  (Ctrl-C to stop)"
	$(BIN)/gunicorn -c webapp/gunicorn_conf.py wsgi:app

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-test: tests/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r tests/requirements.txt
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# Browser tests drive Debian's Chromium (a downloaded browser cannot be fetched here).
browser:
	@if [ -x "$(CHROMIUM_PATH)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
		echo "Chromium is needed for the browser tests and is not at $(CHROMIUM_PATH)."; \
		echo "Install it with: sudo apt-get install chromium  (or set CHROMIUM_PATH)"; \
		exit 1; \
	fi

migrate: install
	$(BIN)/flask --app wsgi db upgrade

seed: install
	$(BIN)/flask --app wsgi seed-demo --if-empty

%.mo: %.po | $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -i $< -o $@

compile-translations: $(MO_FILES)

# After adding or changing user-facing strings: extract them (babel.cfg) and merge them
# into every .po; then translate the new and fuzzy entries (tests/test_translations.py
# names each missing one, with its file and line).
translations: install
	$(BIN)/pybabel extract -F babel.cfg --sort-by-file --no-wrap --project Schoolbell \
		--msgid-bugs-address "" --copyright-holder "" -o $(POT) .
	$(BIN)/pybabel update -i $(POT) -d webapp/translations --no-wrap --ignore-obsolete
	@echo "Now translate the new and fuzzy entries in $(PO_FILES) (make test names them)."

test: install-test $(MO_FILES) ## Install test needs and run every test (PostgreSQL and Redis too)
	$(BIN)/ruff check webapp tests migrations/env.py
	$(BIN)/ruff format --check webapp tests migrations/env.py
	$(BIN)/pytest

lint: install-test  ## Lint and format check only (make test runs them too)
	$(BIN)/ruff check webapp tests migrations/env.py
	$(BIN)/ruff format --check webapp tests migrations/env.py

# Benchmark (bench/README.md): `make bench`, `make bench N=1000`, `make bench BENCH_ARGS=--quick`.
# Pins the servers to CPU 0 and the load generator to CPU 1; about 8 minutes by default.
$(VENV)/.installed-bench: bench/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r bench/requirements.txt
	@touch $@

bench/node_modules/.installed: bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

bench: $(VENV)/.installed-bench bench/node_modules/.installed ## Schoolbell vs the naive loop vs Flask-SocketIO
	$(BIN)/python bench/run.py $(if $(N),--n $(N)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts $(MO_FILES) $(POT)
