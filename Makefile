# Everything a fresh Debian machine needs, installed by the two entry points:
#   make demo   bootstrap, then run the default pipeline end to end
#   make test   bootstrap, then run the test suites
# Both are idempotent: a second run only checks stamps.

VENV      := .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
STAMP     := $(VENV)/.tinypipe-installed
APT_PKGS  := gcc g++ make cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang \
             libclang-rt-14-dev
DEMO_OUT  ?= runs/demo
PYTEST    ?= $(VENV)/bin/pytest
HIL_ENVS  ?= --env qemu-m4 --env qemu-m7 --env qemu-m55
export PLATFORMIO_CORE_DIR ?= $(CURDIR)/.pio-core

.PHONY: bootstrap apt venv pio demo test test-host test-hil lint clean

bootstrap: apt venv pio

apt:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,qat]'
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
