UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")

.PHONY: install run demo test lint unasync docs bench clean

$(UV):
	python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv

# Every extra and the docs group: the tests run the CLI, every integration and the docs build.
install: $(UV)
	$(UV) sync --locked --all-extras --group docs

run: install
	$(UV) run python -m examples.allocation serve

demo: install
	$(UV) run python -m examples.allocation demo

unasync:
	$(UV) run python tools/unasync.py

lint: install
	$(UV) run python tools/unasync.py --check
	$(UV) run ruff check src tests examples benchmarks tools
	$(UV) run ruff format --check src tests examples benchmarks tools
	$(UV) run mypy --strict src tests examples benchmarks tools

test: lint
	$(UV) run pytest

# The API reference and the guides, into site/; a warning (a broken reference) fails it.
docs: install
	$(UV) run mkdocs build --strict

bench: $(UV)
	$(UV) sync --locked --all-extras --group bench
	$(UV) run python -m benchmarks.bus
	$(UV) run python -m benchmarks.store
	$(UV) run python -m benchmarks.store_writes
	$(UV) run python -m benchmarks.http
	$(UV) run python -m benchmarks.projections
	$(UV) run python -m benchmarks.sagas
	$(UV) run python -m benchmarks.transports
	$(UV) run python -m benchmarks.workers
	$(UV) run python -m benchmarks.console

clean:
	rm -rf .venv var site .pytest_cache .mypy_cache .ruff_cache
