#!/bin/sh
# Installs pushgw from a source tree into a new virtual environment:
#     sh deploy/docker/install.sh SRC_DIR VENV_DIR
# builds pushgw's wheel from SRC_DIR (pyproject.toml + pushgw/) and installs it
# with its dependencies into VENV_DIR, then checks that `pushgw --version` runs.
#
# This is the one install step of the Docker image (the Dockerfile's build
# stage runs it) and of tests/test_deploy.py, which runs the same script
# outside Docker because no Docker engine runs on the project's machines.
# The systemd unit expects the same layout: sh deploy/docker/install.sh . /opt/pushgw
#
# PYTHON names the interpreter (default python3); it must be Python >= 3.11.
set -eu

usage="usage: install.sh SRC_DIR VENV_DIR"
src=${1:?$usage}
venv=${2:?$usage}
python=${PYTHON:-python3}

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT

"$python" -m venv "$venv"
"$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-input \
    --no-deps --wheel-dir "$wheels" "$src"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "$wheels"/pushgw-*.whl
"$venv/bin/pushgw" --version
