#!/usr/bin/env bash
# The GPU benchmark of issue #13 in one call (benchmarks/gpu.py says what it measures): the matmul peak, the
# fine-tuning step, TracIn pairs/s exact and projected, and the projected wall time of specs/xnli.yaml on one GPU.
#
# The device machine reaches no package registry, and its python3 (3.12, with torch, transformers, tokenizers,
# pyyaml, pyarrow) lacks pydantic. So first, here, once: fetch those wheels into the git-ignored .whl/
#     bash benchmarks/gpu.sh --fetch-wheels
# then through the device tool:  run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=420)
# Results in $OUT (a temporary folder when unset): gpu.json and gpu.log. Other arguments go to gpu.py; the
# wrapper's check on a CPU:  PYTHON=.venv/bin/python bash benchmarks/gpu.sh --device cpu --tiny
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
DEVICE_PYTHON=3.12  # the device machine's python3
# pydantic and what it needs, at the versions the project's venv resolves (typing-extensions: pydantic needs >= 4.16)
WHEELS=(pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0)

timed() {
    local start=$SECONDS
    "$@"
    echo "(took $((SECONDS - start)) s: $*)"
}

fetch_wheels() {
    rm -rf .whl
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
}

install() {
    if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
        # A bare machine with a registry: the project's pins (PyPI's torch 2.13.0 for Linux x86-64 is a CUDA build).
        timed "$PYTHON" -m pip install -e .
    fi
    if ! "$PYTHON" -c 'import pydantic, yaml, transformers, tokenizers, pyarrow' 2>/dev/null; then
        if [[ -d .whl ]]; then
            timed "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
            export PYTHONPATH="$PYTHONPATH:/tmp/site"
        else
            timed "$PYTHON" -m pip install "${WHEELS[@]}"  # needs a registry
        fi
    fi
}

main() {
    date -u
    echo "python: $PYTHON, $("$PYTHON" --version 2>&1)"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    install
    "$PYTHON" -c 'import torch, transformers; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}), transformers {transformers.__version__}")'
    timed "$PYTHON" benchmarks/gpu.py "$@"
    if command -v nvidia-smi >/dev/null; then  # the clocks just after the load
        nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used --format=csv
    fi
}

if [[ ${1:-} == --fetch-wheels ]]; then
    fetch_wheels
    exit
fi
OUT=${OUT:-$(mktemp -d)}
export OUT PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
main "$@" 2>&1 | tee "$OUT/gpu.log"
echo "results: $OUT/gpu.json, $OUT/gpu.log"
