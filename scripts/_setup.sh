# Shared by scripts/quickstart and scripts/test: create .venv (once) and install the package.
# Usage: source scripts/_setup.sh [EXTRAS]   e.g. "dev"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RUNYARD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
stamp="$VENV/.runyard-installed${extras:+-$extras}"
if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
  echo "[setup] installing runyard${extras:+[$extras]} into $VENV" >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
