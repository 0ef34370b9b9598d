#!/usr/bin/env bash
# The checks that need a GPU, in one run: the CUDA tests, then the benchmark's throughput,
# evaluation and arithmetic parts in float32 and with --amp, then its population part (K sweep
# trials trained together for K = 1 to 32, one epoch each, float32 as a population trains). Run
# from the repository root on a CUDA machine with torch, torchvision, numpy, PyYAML, tqdm, pytest
# and the command line's simple-parsing, and MNIST under data/ (`python -m sae.data fetch`). The
# population part draws its trials from the sweep's space (sae.sweep.space), so it also needs
# Optuna (with colorlog; not MLflow); without it it fails alone, after the other checks.
# Results go to $OUT (default reports/cuda). The population part is cut off after 5 minutes so
# that the script ends inside a 10-minute window; its per-K lines are in its log either way.
#
# A machine without these packages (and no index to install from) takes wheels from .whl/,
# downloaded beside the checkout beforehand (pure Python, about 600 KB):
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps -d .whl simple-parsing==0.1.9 docstring-parser==0.18.0 \
#         optuna==5.0.0 colorlog==6.12.0
set -uo pipefail
out="${OUT:-reports/cuda}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
status=0

if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/sae-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/sae-site"
fi
if ! "$python" -c "import simple_parsing" 2>/dev/null; then
    echo "error: simple-parsing is not installed and .whl/ holds no wheel of it (see above)" >&2
    exit 1
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
"$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py tests/test_bench.py \
    2>&1 | tee "$out/pytest.log" || status=1
for amp in no-amp amp; do
    "$python" experiments/bench.py --device cuda --"$amp" --parts throughput,eval,flops \
        --no-track --root data --output "$out/bench-cuda-$amp.json" 2>&1 | tee "$out/bench-$amp.log" \
        || status=1
done
timeout 300 "$python" experiments/bench.py --device cuda --no-amp --parts population \
    --population-epochs 1 --no-track --root data --output "$out/bench-cuda-population.json" \
    2>&1 | tee "$out/bench-population.log" || status=1
exit $status
