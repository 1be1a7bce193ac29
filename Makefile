# compute-units — the two commands the README opens with:
#   make demo   installs what it needs, boots a sandbox systemd node and shows the whole story
#   make test   installs what it needs, runs ruff, mypy --strict and every test (integration too)
#
# Python packages go into a virtual environment under build/ (Debian 12's own python3 refuses
# system-wide pip installs); its bin/ comes first on PATH, also for commands run inside the
# sandbox node (nsenter keeps the environment, and the checkout is bound into the node).

PYTHON ?= python3
VENV ?= build/venv
PY = $(CURDIR)/$(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# found missing by running `make demo && make test` on a fresh Debian 13 (compute_units_dev/fresh-machine.sh):
# iproute2 (`ip netns` of the fleet and socket tests), openssh-client (Ansible's ssh connection),
# groff-base and man-db (the man page tests render it);
# the RPM build needs setuptools in the venv (pyproject's test extra: Python 3.12+ venvs have none)
APT_PACKAGES = podman crun conmon uidmap systemd-container dbus debootstrap busybox-static \
	docker-registry libsystemd-dev pkg-config gcc python3-dev python3-venv rpm rpmlint curl \
	python3-jinja2 python3-yaml python3-typer python3-rich python3-pystemd iproute2 openssh-client \
	groff-base man-db
PYTEST_ARGS ?=

.PHONY: deps apt pip lint test unit integration packaging fuzz demo bench rpm clean

deps: apt pip

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

pip: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

LINTED = compute_units compute_units_dev tests bench packaging/gen-man.py

lint:
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy $(LINTED)
	$(PY) -m compute_units_dev.sizes $(LINTED)

test: deps lint
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken"; exit 1; fi; exit $$rc

# markers come from the test directories (tests/conftest.py): unit builds no RPM and boots no node
unit: pip
	$(PY) -m pytest -q -m 'not integration and not packaging' $(PYTEST_ARGS)

integration: deps
	$(PY) -m pytest -q -m integration $(PYTEST_ARGS)

packaging: deps
	$(PY) -m pytest -q -m packaging $(PYTEST_ARGS)

# a long fuzz campaign of the spec loader, the importer and the state readers (20,000 examples per test)
fuzz: pip
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_fuzz.py tests/unit/test_state_files.py -k fuzz $(PYTEST_ARGS)

demo: deps
	$(PY) -m compute_units_dev.demo

bench: deps
	$(PY) -m bench.bench_generate
	$(PY) -m bench.bench_vm --reps 20
	$(PY) -m bench.bench_sockets --reps 20
	$(PY) -m bench.bench_fleet

rpm: deps
	PYTHON=$(PY) packaging/build-rpm.sh

clean:
	rm -rf build/nodes build/venv build/bench-venv .pytest_cache .mypy_cache .ruff_cache
