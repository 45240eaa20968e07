# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test fuzz install lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The newcomer's run edits a private copy, so the shipped default stays as shipped;
# the copy sends to the sandbox `--sandbox` runs (its login is in the banner).
run: $(STAMP) var/mikotui.toml
	$(BIN)/mikotui --sandbox --config var/mikotui.toml

var/mikotui.toml: | $(STAMP)
	mkdir -p var
	cp config/mikotui.toml $@
	$(BIN)/mikotui --config $@ sandbox --point-config

test: $(STAMP)
	sh tests/oauth/install.sh
	$(BIN)/python -m pytest -q

# The property tests with fresh random cases and FUZZ_FACTOR (10) times as many
# as CI tries; a failure prints the case to pin with @example.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -m hypothesis

lint: $(STAMP)
	$(BIN)/ruff check mikotui tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
