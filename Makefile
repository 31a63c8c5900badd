# The two commands: `make run` (the demo on http://127.0.0.1:8000) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV := ENVIRONMENT=development DEBUG=true

.PHONY: run test lint install lock clean

# Pinned versions with their hashes: the same set on every machine and in CI. `make lock`
# writes it after a change to pyproject.toml's dependencies (add PIP_COMPILE_ARGS=--upgrade to
# move every pin to the newest release).
LOCK := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		echo "Replacing $(VENV): it was made with a Python older than 3.12"; rm -rf $(VENV); fi
	@if [ ! -x $(PY) ]; then \
		python_bin=$$(sh scripts/find-python) || exit 1; \
		echo "Creating $(VENV) with $$python_bin"; \
		"$$python_bin" -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --all-extras --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links $(PIP_COMPILE_ARGS) \
		--output-file $(LOCK) pyproject.toml

run: $(STAMP)
	$(DEV) $(PY) manage.py migrate --noinput
	$(DEV) $(PY) manage.py seed_demo
	$(DEV) scripts/run-dev $(PY)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var/static .pytest_cache
