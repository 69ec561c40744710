#!/usr/bin/env bash
# Makes .quell/venv-python, the project's own venv for Python runbooks: componentize-py builds
# them (its wheel carries CPython for wasm: nothing is fetched at build time) and pytest runs
# their unit tests. Safe to run again. Needs python3 with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.quell/venv-python
if [ ! -x "$venv/bin/componentize-py" ] || [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'componentize-py==0.25.1' 'pytest==9.2.0'
fi
