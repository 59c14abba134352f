# Sourced by scripts/serve and scripts/test: make .venv (Python 3.11+) and install into it.
# Usage: ensure_venv REQUIREMENT...   e.g. ensure_venv "$ROOT"   or   ensure_venv "$ROOT[test]" "$ROOT/clients/python"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RELAY_VENV:-$ROOT/.venv}"

ensure_venv() {
    local python="${PYTHON:-python3}" editables=()
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "Relay needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
            exit 1
        fi
        echo "creating $VENV" >&2
        "$python" -m venv "$VENV"
    fi
    for requirement in "$@"; do
        editables+=(--editable "$requirement")
    done
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${editables[@]}" >&2
}
