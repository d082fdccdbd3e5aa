#!/usr/bin/env bash
# Build the Lambda runtime environments of the host executor: one virtualenv per Python version found on this
# machine, with the pinned awslambdaric + boto3 of runtime-requirements.txt (what the managed runtime ships).
#
#   infra/localstack/install_runtimes.sh [TARGET_DIR] [python3.X ...]
#
# TARGET_DIR defaults to $HOST_LAMBDA_RUNTIMES_DIR, else .stack/lambda-runtimes in the repository. Versions default
# to python3.11 python3.12 python3.13; a version whose interpreter is missing is skipped with a note (functions
# with that Runtime then fail at CreateFunction with a StateReason naming it), except python3.11, which the
# pipeline's own function uses: without it the script fails. Idempotent: an environment whose .ready marker matches
# the requirements' hash is left alone; a changed or half-built one is rebuilt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${1:-${HOST_LAMBDA_RUNTIMES_DIR:-$repo/.stack/lambda-runtimes}}"
shift || true
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then versions=(python3.11 python3.12 python3.13); fi
requirements="$here/runtime-requirements.txt"
required="python3.11"

digest="$(sha256sum "$requirements" | cut -c1-16)"
mkdir -p "$target"

# An interpreter that really runs: on PATH (pyenv shims print an error for versions not selected), then pyenv's
# installed versions, then the usual system locations.
find_interpreter() {
  local name="$1" number="${1#python}" candidate
  for candidate in \
    "$(command -v "$name" 2>/dev/null || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$number"*/bin/"$name" \
    /usr/local/bin/"$name" /usr/bin/"$name"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] \
      && "$candidate" -c "import sys, venv; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$number' else 1)" \
        >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# A fresh virtualenv with the pinned packages; the .ready marker last, so a half-built one is never used.
build() {
  local interpreter="$1" env_dir="$2"
  rm -rf "$env_dir" &&
    "$interpreter" -m venv "$env_dir" &&
    "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" &&
    "$env_dir/bin/python" -c "import awslambdaric, boto3" &&
    echo "$digest" > "$env_dir/.ready"
}

status=0
for runtime in "${versions[@]}"; do
  env_dir="$target/$runtime"
  if [ -f "$env_dir/.ready" ] && [ "$(cat "$env_dir/.ready")" = "$digest" ] && [ -x "$env_dir/bin/python" ]; then
    echo "[runtimes] $runtime: up to date ($env_dir)"
    continue
  fi
  if ! interpreter="$(find_interpreter "$runtime")"; then
    if [ "$runtime" = "$required" ]; then
      echo "[runtimes] $runtime: no $runtime interpreter found; it is required (install it, e.g. apt-get install $runtime)" >&2
      status=1
    else
      echo "[runtimes] $runtime: no $runtime interpreter on this machine, skipped (functions with Runtime $runtime will be Failed)"
    fi
    continue
  fi
  echo "[runtimes] $runtime: building $env_dir with $interpreter"
  if ! build "$interpreter" "$env_dir"; then
    rm -rf "$env_dir"
    echo "[runtimes] $runtime: build failed (see pip's message above); functions with Runtime $runtime will be Failed" >&2
    if [ "$runtime" = "$required" ]; then status=1; fi
  fi
done
exit $status
