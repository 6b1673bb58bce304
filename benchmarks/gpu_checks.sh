#!/usr/bin/env bash
# Every check that needs a GPU, in one call (a lent GPU machine is held for minutes, not hours):
#   1. tests/model/test_cuda.py: the loss against the CPU reference (eager and compiled), no host sync in the
#      loss, bf16/fp16 training through the CLI, cached negatives on CUDA, fused AdamW, the pipeline;
#   2. bench_loss_cost.py: step time of the bilateral DynamicSVR loss, eager and compiled (compile_loss),
#      against InfoNCE / SigLIP, htsat architecture at batch 64;
#   3. bench_gradient_cache.py: cached negatives at batch 4,096 (htsat), memory against a dense step on one
#      chunk, time against a dense step on the same batch at 256;
#   4. bench_towers.py: the paper's towers (CED-Base-like audio + SONAR-like text, random weights) against
#      laion/clap-htsat-unfused's shapes, step time and peak memory at batch 24 (the paper's) and 256.
# Each part has its own time limit, so one that hangs leaves time for the others.
#
# Usage: bash benchmarks/gpu_checks.sh OUT_DIR   (results: OUT_DIR/*.log and *.json)
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
# On a machine without this project's dependencies, wheels in .whl/ are installed first (to /tmp/site);
# .whl/optional/ (pyarrow) only where the machine's own is older than datasets needs.
if [ -d .whl ]; then
    wheels=(.whl/*.whl)
    python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null \
        || wheels+=(.whl/optional/*.whl)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}" && export PYTHONPATH=/tmp/site
fi
python3 - <<'EOF' 2>&1 | tee "$out/versions.log"
import platform, torch, transformers, datasets, accelerate, pyarrow
print(platform.platform(), "python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("transformers", transformers.__version__, "datasets", datasets.__version__,
      "accelerate", accelerate.__version__, "pyarrow", pyarrow.__version__)
EOF

part() {  # part NAME SECONDS COMMAND...: run with a limit, log to OUT/NAME.log, report the status
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "## $name: exit $rc after $((SECONDS - start)) s (limit $limit s)"
    tail -n 25 "$out/$name.log"
}

part test_cuda "${TEST_LIMIT:-210}" python3 -m pytest -q -n 6 -p no:cacheprovider tests/model/test_cuda.py
part loss_cost "${LOSS_LIMIT:-150}" python3 benchmarks/bench_loss_cost.py --device cuda --threads 0 \
    --models htsat --batch_htsat 64 --repeats 15 --variants infonce infonce+dynamic-bi siglip siglip+dynamic-bi \
    --compile_loss --json "$out/loss_cost_htsat_b64_compiled.json"
part gradient_cache "${CACHE_LIMIT:-150}" python3 benchmarks/bench_gradient_cache.py --device cuda --threads 0 \
    --cases htsat:4096:128 htsat:256:64 --max_dense_htsat 256 --repeats 2 --json "$out/gradient_cache_htsat.json"
part towers "${TOWERS_LIMIT:-150}" python3 benchmarks/bench_towers.py --part cost --device cuda --threads 0 \
    --cost_models clap-htsat paper --batch 24 256 --repeats 5 --json "$out/towers_paper.json"
