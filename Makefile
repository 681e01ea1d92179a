# Two commands do everything on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch/torchvision releases known to work (on this project's machines they install from local disk)
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup book book-smoke test test-fast bench sweep sweep-full clean-book clean lock help

help:
	@echo "make book   set up .venv, execute every notebook and build the HTML book into _build/html"
	@echo "make book-smoke  the same with every notebook in smoke mode (quick), into _build/smoke"
	@echo "make test   set up .venv and run the whole test suite (unit tests + notebook regression)"
	@echo "make bench  run the benchmarks (results/bench_*.json)"
	@echo "make sweep  every chapter in smoke mode for seeds 0..4 at 1 and 2 torch threads -> book/seed_sweep.md"
	@echo "make sweep-full  the same in full mode for seeds 0..2 (hours on a 2-core CPU)"

setup: $(STAMP)

# (Re)install when the venv is missing or older than pyproject.toml / constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS) || $(BIN)/python -m pip install --quiet "torch>=2.1" "torchvision>=0.16"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (interpkit)" >/dev/null
	touch $(STAMP)

book: setup
	$(BIN)/python tools/build_book.py

# Quick check of the book: every notebook in smoke mode, into _build/smoke (its own execution cache).
book-smoke: setup
	$(BIN)/python tools/build_book.py --smoke

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not notebook and not browser"

bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Which claims hold over seeds and thread counts (records in book/seed_sweep/, table in book/seed_sweep.md).
sweep: setup
	$(BIN)/python tools/seed_sweep.py

sweep-full: setup
	$(BIN)/python tools/seed_sweep.py --full

# Record the versions the suite last ran with (used as constraints by `make setup`).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV) results
