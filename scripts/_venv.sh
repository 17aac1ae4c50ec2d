# Sourced by scripts/serve and scripts/test: make .venv with the given extras, once per change
# of pyproject.toml. Usage: ensure_venv "dev,sim"
ensure_venv() {
  local extras="$1"
  local python=""
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "error: Python 3.11 or newer is required" >&2
    exit 2
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=".venv/.installed-${extras//,/-}"
  local digest
  digest=$(cat pyproject.toml | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[${extras}]"
    echo "$digest" > "$stamp"
  fi
}
