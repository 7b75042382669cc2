#!/usr/bin/env bash
# The README's main job: build a small cluster dataset with a teacher calculator, train DART on
# it, and write predictions and a parity plot. About two minutes on 2 CPU cores.
#   bash examples/quickstart.sh [OUTDIR]
set -euo pipefail
out=${1:-quickstart}
rm -rf "$out"
mkdir -p "$out"
ase-mlgen dataset clusters --element Cu --sizes 8-12 --per-size 4 --frames 3 --steps 30 \
    --teacher emt --db "$out/cu.db" --workers 2 --seed 0
ase-mlgen train dart "$out/cu.db" --out "$out/run" --max-epochs 40 --seed 0
ase-mlgen predict "$out/run/model.pt" "$out/cu.db" --db "$out/predictions.db" \
    --parity "$out/parity.png"
ase-mlgen status "$out/run"
echo "parity plot: $out/parity.png"
