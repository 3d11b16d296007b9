#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image from the uploaded
# zip (unpacked in /autograder/source). It installs the grader into its own virtualenv (the
# system python3 stays untouched: the platform's harness uses it), creates the unprivileged
# user student code runs as, and finishes the deployed tree (python -m grader.deploy configure).
# Everything that decides a grade lives in the Python package; this only installs it.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${GRADER_VENV:-/opt/grader-venv}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
SANDBOX_USER="${GRADER_SANDBOX_USER:-grader-student}"
export DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends python3-venv
    rm -rf /var/lib/apt/lists/*
fi

python3 -m venv "$VENV"
# torch alone from the CPU index first; requirements.txt then finds it satisfied
torch_pin="$(grep -E '^torch==' "$SRC/requirements.txt")"
"$VENV/bin/pip" install --no-deps --index-url "$TORCH_INDEX" "$torch_pin"
"$VENV/bin/pip" install -r "$SRC/requirements.txt"
"$VENV/bin/pip" install --no-deps "$SRC"
"$VENV/bin/pip" check

if ! id -u "$SANDBOX_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SANDBOX_USER"
fi

"$VENV/bin/python" -m grader.deploy configure "$SRC" --sandbox-user "$SANDBOX_USER"

# the reference solutions, specs and test data are for the grader (root) only
chmod -R go-rwx "$SRC"
chmod 755 "$VENV"
