#!/bin/sh
# ansible-test sanity for compute_units.fleet, offline-friendly: a venv with the sanity
# requirements (from the package index), the pip bootstrap stand-in, tests that need network or
# containers skipped (see docs/fleet.md). Usage: ansible/tools/sanity.sh [ansible-test options]
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv="$repo/build/ansible-test-venv"
version=$("$repo/build/venv/bin/python" -c 'import ansible.release as r; print(r.__version__)')
# in a function: its own positional parameters, so the caller's ansible-test options survive
install_venv() {
    python3 -m venv "$venv"
    set --
    for f in "$repo"/build/venv/lib/python3.*/site-packages/ansible_test/_data/requirements/sanity.*.txt; do
        set -- "$@" -r "$f"
    done
    "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$version" "$@"
}
if [ ! -x "$venv/bin/ansible-test" ]; then
    install_venv
fi
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
pip_version=$(grep -o "pip='[0-9.]*'" "$venv"/lib/python3.*/site-packages/ansible_test/_internal/python_requirements.py | head -1 | tr -dc '0-9.')
cp "$repo/ansible/tools/get_pip_offline.py" "$cache/get_pip_$(echo "$pip_version" | tr . _).py"
cd "$repo/ansible/ansible_collections/compute_units/fleet"
PATH="$venv/bin:$PATH" exec ansible-test sanity --python 3.11 --color no "$@"
