#!/usr/bin/env bash
# The one prepared call for a session lent a GPU (the `device` tool): the CUDA tests (CUDA-graph
# training, the device world, device decisions), then gpu.py (MovieLens, B = 4,096: the whole GPU
# path, each piece switched back for comparison, and the CPU beside it) and neural_speed.py on
# CUDA, then decision_profile.py at B = 1 (host waits and launches per decision). Logs go to $OUT; each
# stage has its own time limit (TEST_TIMEOUT, GPU_TIMEOUT, SPEED_TIMEOUT, PROFILE_TIMEOUT).
#
# The device image has PyTorch but not gymnasium, and no network: bring the wheels and the data
# cache first, here, from the repo root (both paths are ignored by git; pass them as `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl gymnasium==1.4.0 farama-notifications
# (without numba there the linear models' compiled loops fall back to the numpy code; add
# numba==0.68.1 llvmlite==0.50.0 to that download, with --platform manylinux_2_28_x86_64, for them.)
#   mkdir -p .devcache && cp -r ~/.cache/banditrec/{movielens-100k-v1,worlds,features} .devcache/
# then run `bash benchmarks/gpu_session.sh` there with carry [".whl", ".devcache"].
set -u -o pipefail
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} BANDITREC_CACHE=$PWD/.devcache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
torch.cuda.get_device_name(), 'numpy', numpy.__version__)" 2>&1 | tee -a "$out/gpu.txt"
echo "== CUDA tests"
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider -rs \
    tests/policies/test_graphed_training.py tests/environments/test_device_world.py \
    tests/policies/test_device_decisions.py tests/models/test_models.py -k "cuda or graph" 2>&1 \
    | tee "$out/pytest.txt" | tail -25
echo "== gpu.py"
timeout "${GPU_TIMEOUT:-300}" python3 benchmarks/gpu.py --device cuda --compare "${GPU_COMPARE:-eager,numpy-world}" \
    2>&1 | tee "$out/gpu_py.txt"
echo "== neural_speed.py"
timeout "${SPEED_TIMEOUT:-120}" python3 benchmarks/neural_speed.py --device cuda --decisions 2048 2>&1 \
    | tee "$out/neural_speed.txt"
echo "== decision_profile.py"
timeout "${PROFILE_TIMEOUT:-60}" python3 benchmarks/decision_profile.py --device cuda --batch 1 --decisions 256 \
    --policies NeuralEpsilonGreedy,NeuralLinear 2>&1 | grep -v USDT > "$out/profile_b1.txt"
grep -E "^==|^  " "$out/profile_b1.txt"
