# Two targets for a fresh machine (Python 3.10+ with venv; no GPU, no Docker, no download of data or weights):
#   make example   set up .venv, make a CT phantom, segment it with the shipped weights, score it
#   make test      set up .venv and run the test suite
#   make bench     run the CPU benchmarks of bench/ (tables in bench/results/)
#   make realcheck segment every real case of ../shared/data and print the scorecard (DSC, NSD, false-positive mL)
#   make mutate    break the code in targeted ways, one at a time, and print which test catches each (slow)
#   make lint      ruff, and tools/: the task's constants once per package, each option's choices once, no import
#                  cycle, no import across layers (inference/ without torch.optim), no function over 100 lines
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE := example
PYTEST_ARGS ?=
REAL_DATA ?= ../shared/data
WEIGHTS ?= weights/runet.pt
REALCHECK ?= realcheck

.PHONY: example test bench lint mutate venv clean realcheck

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-bench.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

example: venv
	rm -rf $(EXAMPLE)
	$(PY) -m phantom --out $(EXAMPLE)/phantom --cases 1 --seed 1 --size 512 --slices 64 64
	INPUT_DIR=$(EXAMPLE)/phantom/imagesTr OUTPUT_DIR=$(EXAMPLE)/outputs PYTHON=$(PY) sh predict.sh
	$(PY) -m evaluation.evaluate --gt $(EXAMPLE)/phantom/labelsTr --pred $(EXAMPLE)/outputs --out $(EXAMPLE)/scores
	@echo "label maps written to $(EXAMPLE)/outputs/, scores in $(EXAMPLE)/scores/"

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	for b in stages floor monai postprocess startup nsd cohort; do $(PY) bench/bench_$$b.py || exit 1; done

realcheck: venv
	rm -rf $(REALCHECK)/pred
	$(PY) -m inference.predict -i $(REAL_DATA) -o $(REALCHECK)/pred --weights $(WEIGHTS)
	$(PY) -m evaluation.scorecard --gt $(REAL_DATA) --pred $(REALCHECK)/pred --out $(REALCHECK)/scorecard.csv \
		--anatomy $(REAL_DATA)/templates

mutate: venv
	$(PY) tests/mutate.py

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) tools/check_task_constants.py
	$(PY) tools/check_option_choices.py
	$(PY) tools/check_import_cycles.py
	$(PY) tools/check_layers.py
	$(PY) tools/check_function_length.py --max 100

clean:
	rm -rf $(EXAMPLE) $(REALCHECK) .pytest_cache
