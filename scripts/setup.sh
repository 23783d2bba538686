#!/usr/bin/env bash
# Sets up a fresh Debian machine with Python >= 3.10 for tfp_vae:
#  - Fashion-MNIST from Debian's package dataset-fashion-mnist (the default
#    dataset; installed where apt is available and we are root or have sudo),
#  - a virtual environment .venv with the package (editable) and test tools.
# Safe to rerun: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q dataset-fashion-mnist
  else
    echo "note: cannot install dataset-fashion-mnist (not root, no sudo);" \
         "train.py will look in its download cache instead." >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
