#!/usr/bin/env bash
# Re-resolve every lock (`make lock`; UPGRADE=--upgrade moves pins forward).
#
# One resolution of the project with every extra decides each package's version; each
# profile's lock is then that resolution cut down to what the profile needs, so any
# profiles installed side by side agree. The current pins are the preferences (uv keeps a
# version that still fits unless --upgrade is given), so adding a package moves nothing else.
#   core.lock     the pipeline, the predictor and the dev tools (.venv: make setup)
#   EXTRA.lock    core plus one extra, added to .venv by the first target that needs it
#   serve.lock    MLServer's own venv (.venv-serve), from serving/requirements.in
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
extras=(team sweep browser monitor)
target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet
  --custom-compile-command "make lock")
# the whole resolution, kept only while the profiles are cut from it (a stable name, so the
# locks' "via" notes do not change from run to run)
resolution=locks/resolution.txt
trap 'rm -f "$resolution"' EXIT

# every current pin once, as the resolution's preferences
for lock in core "${extras[@]}"; do
  cat "locks/$lock.lock" 2>/dev/null || true
done | { grep -oE '^[A-Za-z0-9_.-]+==[^ ]+' || true; } | sort -u >"$resolution"
# shellcheck disable=SC2086  # UPGRADE is empty or one flag
"$uv" pip compile pyproject.toml --extra dev "${extras[@]/#/--extra=}" "${target[@]}" \
  ${UPGRADE:-} -o "$resolution"

"$uv" pip compile pyproject.toml --extra dev -c "$resolution" "${target[@]}" \
  --generate-hashes -o locks/core.lock
for extra in "${extras[@]}"; do
  "$uv" pip compile pyproject.toml --extra dev --extra "$extra" -c "$resolution" \
    "${target[@]}" --generate-hashes -o "locks/$extra.lock"
done
# shellcheck disable=SC2086
"$uv" pip compile serving/requirements.in "${target[@]}" ${UPGRADE:-} --generate-hashes \
  -o locks/serve.lock
