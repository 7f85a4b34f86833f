#!/usr/bin/env bash
# Create .venv and install flexiast into it (editable). `--dev` adds what the tests need,
# and HEAR's validator (hearvalidator) without its declared dependency, TensorFlow: its
# checks of a torch model never use it (tests/test_hear.py stands in for the one name they touch);
# and PaSST's package (hear21passt, tests/test_passt.py's reference) without timm and torchaudio,
# which do not install with this torch: its model code is plain torch, and the test stands in for
# the one timm function it imports (a weights download).
#
# torch is installed first, and only if the environment has none: TORCH_SPEC picks it
# (default torch==2.13.0, the CPU wheel these machines carry; on a GPU machine use the
# build you already have, e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124").
# Installing it first keeps pip from pulling a newer, multi-GB CUDA build as a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "${pip[@]}" ${TORCH_SPEC:-torch==2.13.0}
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"
"${pip[@]}" -e ".${extras}"
if [ "${1:-}" = "--dev" ]; then
  "${pip[@]}" --no-deps hearvalidator==2021.0.2 hear21passt==0.0.26
fi
