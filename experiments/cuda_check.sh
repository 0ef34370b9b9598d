#!/usr/bin/env bash
# The checks that need a GPU, in one run: the CUDA tests, then the benchmark's throughput,
# evaluation and arithmetic parts in float32 and with --amp. Run from the repository root on a
# CUDA machine with torch, torchvision, numpy, PyYAML, tqdm, pytest and the command line's
# simple-parsing, and MNIST under data/ (`python -m sae.data fetch`); MLflow is not needed.
# Results go to $OUT (default reports/cuda).
#
# A machine without simple-parsing (and no index to install from) takes its wheels from .whl/,
# downloaded beside the checkout beforehand (pure Python, 140 KB):
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps -d .whl simple-parsing==0.1.9 docstring-parser==0.18.0
set -uo pipefail
out="${OUT:-reports/cuda}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
status=0

if ! "$python" -c "import simple_parsing" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "error: simple-parsing is not installed and .whl/ holds no wheels (see above)" >&2
        exit 1
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/sae-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/sae-site"
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
exit $status
