#!/usr/bin/env bash
# Sets up a fresh Debian machine with Python >= 3.10 for tfp_vae:
#  - Fashion-MNIST from Debian's package dataset-fashion-mnist (the default
#    dataset; installed where apt is available and we are root or have sudo),
#  - a virtual environment .venv with the package (editable) and test tools.
# Safe to rerun: each step is skipped when already done. Says what it does
# and, at the end, what to run next.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup.sh: $*"; }

if [ -d /usr/share/datasets/fashion-mnist ]; then
  say "Fashion-MNIST is in /usr/share/datasets/fashion-mnist (kept)."
elif command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ]; then
    say "installing Fashion-MNIST (apt package dataset-fashion-mnist)..."
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q dataset-fashion-mnist
  else
    echo "setup.sh: note: cannot install dataset-fashion-mnist (not root, no sudo);" \
         "train.py will look in its download cache instead." >&2
  fi
else
  say "no apt-get: train.py will download Fashion-MNIST when first needed."
fi

PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ]; then
  say "virtual environment .venv exists (kept)."
else
  say "creating the virtual environment .venv with $PYTHON..."
  "$PYTHON" -m venv .venv
fi
say "installing tfp_vae and its test tools into .venv (pip; a few minutes the first time)..."
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

cat <<'NEXT'
setup.sh: done. Next:
  . .venv/bin/activate
  python scripts/train.py --posterior=full_cov --model_dir=runs/fmnist-full_cov
  python scripts/sample.py --model_dir=runs/fmnist-full_cov
  python scripts/evaluate.py --model_dir=runs/fmnist-full_cov
  python -m pytest -n 2 tests        # the tests
(or, after activating: tfp-vae-train, tfp-vae-sample, tfp-vae-evaluate, tfp-vae-compare)
NEXT
