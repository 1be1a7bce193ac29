# compute-units — the two commands the README opens with:
#   make demo   installs what it needs, boots a sandbox systemd node and shows the whole story
#   make test   installs what it needs, runs ruff, mypy --strict and every test (integration too)

PYTHON ?= python3
APT_PACKAGES = podman crun conmon uidmap systemd-container dbus debootstrap busybox-static \
	docker-registry libsystemd-dev pkg-config gcc rpm rpmlint curl
PYTEST_ARGS ?=

.PHONY: deps apt pip lint test unit integration demo bench rpm clean

deps: apt pip

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

pip:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

LINTED = compute_units tests bench packaging/gen-man.py

lint:
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m ruff format --check $(LINTED)
	$(PYTHON) -m mypy $(LINTED)

test: deps lint
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken"; exit 1; fi; exit $$rc

unit: pip
	$(PYTHON) -m pytest -q -m 'not integration' $(PYTEST_ARGS)

integration: deps
	$(PYTHON) -m pytest -q -m integration $(PYTEST_ARGS)

demo: deps
	$(PYTHON) -m tests.demo

bench: deps
	$(PYTHON) -m bench.bench_generate
	$(PYTHON) -m bench.bench_vm

rpm: deps
	PYTHON=$(PYTHON) packaging/build-rpm.sh

clean:
	rm -rf build/nodes .pytest_cache .mypy_cache .ruff_cache
