#!/usr/bin/env bash
# Fill deploy/wheels/ (ignored by git) with every wheel the image installs: mlwarden itself with
# its serve extra, and torch (CPU). The docker build then installs with --no-index: it needs no
# network. pip resolves from the package index it is configured with; torch==2.13.0+cpu comes
# from a local wheel directory where PyPI's default torch would pull CUDA (pass it with
# PIP_FIND_LINKS=/path/to/wheels, or copy the wheel into deploy/wheels/ first).
#   deploy/wheelhouse.sh [PYTHON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-python3}
mkdir -p "$here/wheels"
# async-timeout: redis needs it on Python < 3.11.3 (Debian bookworm's 3.11.2 in the image), which
# a resolver running on a newer 3.11 leaves out
"$python" -m pip wheel --wheel-dir "$here/wheels" "$here/..[serve]" "torch==2.13.0" \
  "async-timeout>=4.0.3"
