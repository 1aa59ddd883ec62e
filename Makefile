# Everything a fresh Debian machine needs, installed by the two entry points:
#   make demo   bootstrap, then run the default pipeline end to end
#   make test   bootstrap, then run the test suites
# Both are idempotent: a second run only checks stamps.

VENV      := .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
STAMP     := $(VENV)/.tinypipe-installed
# Debian 12 package names; every one must exist, or apt-get installs nothing.
APT_PKGS  := gcc g++ make cmake python3 python3-venv gcc-arm-none-eabi libnewlib-arm-none-eabi \
             qemu-system-arm clang ser2net
# Installed where the distribution has them, else skipped with a note (never a failed bootstrap):
# libclang-rt-14-dev is clang 14's libFuzzer/ASan runtime (the protocol fuzz test skips without
# it; older archives, most likely Ubuntu 22.04 among them, ship it in libclang-common-14-dev).
APT_OPTIONAL := libclang-rt-14-dev
APT_LISTS ?= /var/lib/apt/lists
DEMO_OUT  ?= runs/demo
PYTEST    ?= $(VENV)/bin/pytest
HIL_ENVS  ?= --env qemu-m4 --env qemu-m7 --env qemu-m55
export PLATFORMIO_CORE_DIR ?= $(CURDIR)/.pio-core

.PHONY: bootstrap apt venv pio demo test test-host test-hil lint clean

bootstrap: apt venv pio

# apt-get update runs only when something will be installed, or when there are no package lists
# to tell whether an optional package exists; a missing optional package costs a note, not root.
apt:
	@set -e; installed() { dpkg-query -W -f='$${Status}' "$$1" 2>/dev/null | grep -q "ok installed"; }; \
	missing=""; for p in $(APT_PKGS); do installed $$p || missing="$$missing $$p"; done; \
	optional=""; for p in $(APT_OPTIONAL); do installed $$p || optional="$$optional $$p"; done; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; updated=""; \
	if [ -n "$$optional" ] && ! ls $(APT_LISTS)/*_Packages* >/dev/null 2>&1; then \
	  $$SUDO apt-get update -q; updated=1; \
	fi; \
	for p in $$optional; do \
	  if apt-cache policy $$p 2>/dev/null | grep -Eq 'Candidate: [^( ]'; then missing="$$missing $$p"; \
	  else echo "note: optional package $$p is not in this distribution's archive; skipped"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  [ -n "$$updated" ] || $$SUDO apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,qat,farm]'
	@# pyserial and labgrid's pyserial-labgrid both install `serial`: the labgrid one (pyserial
	@# plus two RFC 2217 fixes) must be the last written, whatever order pip chose
	$(PIP) install -q --no-deps --force-reinstall \
	  "pyserial-labgrid==$$($(PY) -c 'import importlib.metadata as m; print(m.version("pyserial-labgrid"))')"
	touch $@

pio: venv
	@if [ -x scripts/pio_bootstrap.sh ]; then scripts/pio_bootstrap.sh; fi

demo: bootstrap
	$(VENV)/bin/tinypipe run --config models/demo.yaml --out $(DEMO_OUT)

test: bootstrap test-host test-hil

test-host:
	$(PYTEST) -q tests

test-hil:
	$(PYTEST) -q hil_tests $(HIL_ENVS)

lint: venv
	$(VENV)/bin/ruff check pipeline tests hil_tests

clean:
	rm -rf runs build .pio .pytest_cache
