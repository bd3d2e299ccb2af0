# rootfs: the everyday entry points. `make image` and `make test` are the two
# set-up commands of the README; each installs what it needs first.

PYTHON  ?= .venv/bin/python
ROOTFS  ?= .venv/bin/rootfs
OUT     ?= out
FORMATS ?= --format tar --format oci
RECIPES := $(basename $(notdir $(wildcard recipes/*.toml)))
# What `make all` builds: the recipes the host's apt mirror serves.
ALL     ?= bullseye bookworm trixie sid
PYTEST_ARGS ?=
SETUP   := .venv/.rootfs-installed

FUZZ_TIME ?= 60
FUZZ_ARGS ?=

.PHONY: setup image test test-fast bench fuzz all clean $(RECIPES)

setup: $(SETUP)

$(SETUP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh

# Build the default recipe against the mirror apt is configured with.
image:
	./scripts/image

# The whole suite, as CI runs it.
test:
	./scripts/test $(PYTEST_ARGS)

# Everything that needs neither the real mirror nor root.
test-fast:
	./scripts/setup.sh
	$(PYTHON) -m pytest -ra -m 'not mirror' $(PYTEST_ARGS)

bench:
	./scripts/setup.sh
	$(PYTHON) bench/run.py

# Every fuzz target (fuzz/targets.py) for FUZZ_TIME seconds each, under
# atheris; a crash stops with its input in fuzz/crashes/.
fuzz: $(SETUP)
	cd fuzz && for t in $$(../$(PYTHON) targets.py); do \
	  ../$(PYTHON) run.py $$t -max_total_time=$(FUZZ_TIME) $(FUZZ_ARGS) || exit 1; done

# One target per recipe; `make -j all` builds them in parallel.
$(RECIPES): $(SETUP)
	$(ROOTFS) --quiet make $@ $(FORMATS) -o $(OUT)/$@

all: $(ALL)

clean:
	rm -rf $(OUT)
