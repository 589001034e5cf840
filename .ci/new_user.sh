#!/usr/bin/env bash
# What a new user meets (issue 29): the README's `pip install -e .` in a venv WITHOUT the dev extras, then a tiny
# training run through scripts/train.py and an import of every public module, so a runtime dependency missing from
# settings.ini `requirements` fails CI. Run alone: .ci/new_user.sh (cached venv, same key as .ci/run, plus -user).
set -euo pipefail
cd "$(dirname "$0")/.."
key=$(cat settings.ini setup.py pyproject.toml | sha256sum | cut -c1-16)
UVENV=${VQBA_VENV:-$HOME/.cache/vqba_nb/venv-$key}-user
if [ ! -x "$UVENV/bin/python" ]; then
  python3 -m venv "$UVENV"
  "$UVENV/bin/pip" install -q --upgrade pip
fi
"$UVENV/bin/pip" install -q -e .        # the README's install line, no extras
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# env -u PYTHONPATH: the package and its dependencies must come from this venv alone
env -u PYTHONPATH WANDB_MODE=disabled MPLBACKEND=Agg "$UVENV/bin/python" scripts/train.py --config configs/vqema.yaml \
  --epochs 1 --name newuser --quiet data.synthetic=true data.subset=256 data.test_subset=128 \
  data.batch_size=64 out_dir="$tmp" wandb.mode=disabled
test -s "$tmp/newuser/checkpoints/latest.pt" || { echo "FAIL: the tiny run wrote no checkpoint"; exit 1; }
# every public module, found in the package folder (a new module is covered); none may need a dev-only package
env -u PYTHONPATH MPLBACKEND=Agg "$UVENV/bin/python" - <<'PY'
import importlib, pkgutil, vqba_nb
mods = [m.name for m in pkgutil.iter_modules(vqba_nb.__path__) if not m.name.startswith('_')]
for m in mods: importlib.import_module(f'vqba_nb.{m}')
print(f'new user: tiny run and import of {len(mods)} modules OK: {" ".join(mods)}')
PY
