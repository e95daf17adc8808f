#!/usr/bin/env bash
# The mxnet and optimizer test suites on the other CPython builds this machine carries: each suite on 3.12 and 3.13
# where its environment's locks are made for that Python (envs/*.txt "# Pythons:"), in environments built from those
# locks on that interpreter. A version found nowhere (neither as python3.X that runs, nor under pyenv) is skipped
# with the reason; a version an environment does not support is skipped saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
envs=(.venv/bin/python -m workflow.orchestrator.envs)
status=0

find_python() {
    local version=$1 pyenv_root candidate
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in $(ls -d "$pyenv_root"/versions/"$version".*/bin/python"$version" 2>/dev/null) "python$version"; do
        if "$candidate" -c 'import sys' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
}

for version in 3.12 3.13; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "SKIPPED Python $version: no CPython $version on this machine (neither python$version nor under pyenv)"
        continue
    fi
    for suite in mxnet optimizer; do
        if ! DEEPLENS_SSD_STAGE_PYTHON=$python "${envs[@]}" check "$suite" >/dev/null 2>&1; then
            echo "SKIPPED tests/$suite on Python $version: the $suite environment's locks are not made for it"
            continue
        fi
        echo "tests/$suite on Python $version ($python)"
        DEEPLENS_SSD_STAGE_PYTHON=$python "${envs[@]}" exec "$suite" -- python -m pytest -q "tests/$suite" || status=1
    done
done
exit $status
