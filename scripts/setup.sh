#!/usr/bin/env bash
# Create .venv (if absent) with the pinned requirements and check for Java (PTB tokenizer, METEOR 1.5).
# Idempotent: a second run only verifies. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements.txt"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] Java not found: installing default-jre-headless with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless) >/dev/null \
      || echo "[setup] WARNING: apt-get could not install Java."
  fi
fi
if command -v java >/dev/null 2>&1; then
  echo "[setup] java: $(java -version 2>&1 | head -1)"
else
  echo "[setup] WARNING: no Java runtime found. METEOR 1.5 and the PTB tokenizer need one:" >&2
  echo "        install it (Debian/Ubuntu: sudo apt-get install default-jre-headless) and re-run." >&2
fi
