#!/usr/bin/env bash
# Create (or reuse) the project virtual environment and install robustmix with
# its pinned dependencies. Idempotent: re-running only repairs what is missing.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

# One resolver run for everything: torchattacks ships a stale top-level copy of
# `robustbench/` inside its wheel; the check below catches and repairs it.
$PIP install --quiet -e ".[test]"

# torchattacks' wheel may have overwritten robustbench's modules (same import
# name, older files). Detect it by checking the installed files against
# robustbench's own RECORD and reinstall robustbench alone if they differ.
if ! "$VENV/bin/python" scripts/check_robustbench.py; then
    echo "setup: robustbench was clobbered by torchattacks' bundled copy; reinstalling robustbench" >&2
    $PIP install --quiet --force-reinstall --no-deps "robustbench==1.1.1"
    "$VENV/bin/python" scripts/check_robustbench.py || {
        echo "setup: robustbench is still broken after reinstall; remove $VENV and retry" >&2
        exit 1
    }
fi
echo "setup: environment ready in $VENV"
