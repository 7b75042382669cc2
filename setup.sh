#!/usr/bin/env bash
# One-command set-up of ase_mlgen with every optional extra (GPAW, GAP, xTB, ase-ga, tests).
# Installs the system libraries GPAW needs when run as root (apt-get), a CPU build of torch
# unless a torch is already installed, then the package in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    if ! dpkg -s libxc-dev libopenblas-dev libfftw3-dev >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxc-dev libopenblas-dev libfftw3-dev
    fi
else
    echo "setup.sh: not root; make sure libxc-dev, libopenblas-dev and libfftw3-dev are installed for GPAW" >&2
fi

# torch: keep an installed one; otherwise take the CPU build (a plain 'pip install torch' may pull
# several GB of CUDA packages; users with a GPU install their CUDA torch first).
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi

# GPAW compiles its C extension; it needs a C compiler that accepts its sources (g++ here).
CC=${CC:-g++} "$PY" -m pip install -q -e ".[all]"
"$PY" -m ase_mlgen info
