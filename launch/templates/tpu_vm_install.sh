#!/usr/bin/env bash
# Installs the shipped Vision Banana tree on one Cloud TPU VM worker (run by launch.tpu_vm on
# every worker with --worker=all).
#
# usage: tpu_vm_install.sh CODE_DIR VENV_DIR EXTRA
#   CODE_DIR  unpacked source tree (has pyproject.toml)
#   VENV_DIR  virtual environment to create or update (kept between launches: fast re-installs)
#   EXTRA     pyproject extra with the accelerator's JAX build: tpu (default) or gpu
#
# TPU VM images ship Python 3.10 while the project needs >= 3.11, so the environment is made
# with uv, which fetches a standalone CPython (VB_PYTHON_VERSION, default 3.11).
set -euo pipefail
CODE_DIR="${1:?usage: tpu_vm_install.sh CODE_DIR VENV_DIR [EXTRA]}"
VENV_DIR="${2:?usage: tpu_vm_install.sh CODE_DIR VENV_DIR [EXTRA]}"
EXTRA="${3:-tpu}"
PYTHON_VERSION="${VB_PYTHON_VERSION:-3.11}"
# Absolute paths: an editable install records its path, and "dir[extra]" must not read as a name.
CODE_DIR="$(cd "$CODE_DIR" && pwd)"
mkdir -p "$(dirname "$VENV_DIR")"
VENV_DIR="$(cd "$(dirname "$VENV_DIR")" && pwd)/$(basename "$VENV_DIR")"

UV="$(command -v uv || true)"
if [ -z "$UV" ]; then
  UV="$HOME/.local/bin/uv"
  [ -x "$UV" ] || python3 -m pip install --user --quiet uv
fi
[ -x "$VENV_DIR/bin/python" ] || "$UV" venv --quiet --python "$PYTHON_VERSION" "$VENV_DIR"
"$UV" pip install --quiet --python "$VENV_DIR/bin/python" -e "$CODE_DIR[$EXTRA]"
"$VENV_DIR/bin/python" -c "import vision_banana, launch; print('installed on', __import__('socket').gethostname())"
