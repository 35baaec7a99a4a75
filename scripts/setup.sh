#!/usr/bin/env bash
# Set up attnviz on a fresh machine: a virtual environment in .venv with every dependency.
#   bash scripts/setup.sh          runtime only (the app, the CLI, the API)
#   bash scripts/setup.sh --dev    plus the test tools and Debian's Chromium for browser tests
# Re-running is cheap: pip is skipped while the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON="${PYTHON:-python3}"
REQ=requirements.txt
[[ $DEV == 1 ]] && REQ=requirements-dev.txt

if [[ ! -x .venv/bin/python ]]; then
    echo "attnviz setup: creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
fi

STAMP=.venv/.attnviz-requirements
WANT="$(cat requirements.txt "$REQ" | sha256sum | cut -d' ' -f1)"
if [[ ! -f $STAMP || "$(cat "$STAMP")" != "$WANT" ]]; then
    echo "attnviz setup: installing $REQ (first run downloads torch, a few GB)" >&2
    # torch 2.15.0 is pinned as the index's build (it also runs on CPU): a local CPU-only
    # torch wheel of another version on this machine is then never picked, and torchvision,
    # built against the index's torch, imports.
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$REQ"
    .venv/bin/python -m pip install --quiet --no-deps -e .
    echo "$WANT" > "$STAMP"
fi

if [[ $DEV == 1 && ! -x /usr/bin/chromium ]]; then
    echo "attnviz setup: installing Debian's chromium for the browser tests" >&2
    SUDO=""
    [[ $(id -u) != 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
    if command -v apt-get >/dev/null; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "attnviz setup: no apt-get here; browser tests will be skipped" >&2
    fi
fi

.venv/bin/python -c "import torch, torchvision, pytorch_grad_cam, streamlit, attnviz" \
    || { echo "attnviz setup: the environment does not import; see the messages above" >&2; exit 1; }
echo "attnviz setup: ready (.venv)" >&2
