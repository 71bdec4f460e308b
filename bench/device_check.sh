#!/usr/bin/env bash
# The GPU checks of the book, as one prepared run for a session that is lent a device machine:
#
#     run(command="bash bench/device_check.sh", timeout_s=590, carry=[".whl"])
#
# 1. tests/test_dense_map.py, whose three CUDA tests compare the dense evaluation on the GPU with the CPU's
#    (MAP and mean to rtol 1e-9, std to 1e-7) and are skipped where there is no GPU;
# 2. bench/bench_t1_mapping.py on 1 million voxels: the plain LUT (the ratios' reference), the CPU paths
#    (posterior table, quadratic form) and the dense evaluation on CUDA, with its peak GPU memory;
# 3. the dense evaluation's chunk size (qt1lib.estimate.dense_map.dense_chunk, 32768 on a GPU, a guess
#    until measured) at three sizes;
# 4. bench/bench_resnet.py: chapter 6's network, training and inference patches per second on CUDA.
#
# The device machine's python3 holds a CUDA build of torch with NumPy, SciPy, pandas, tqdm and pytest; the
# network's step (qt1lib.calibrate imports the store's NIfTI reader) needs nibabel too, which travels as a
# wheel in the ignored folder .whl (made here, where pip reaches PyPI):
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 -d .whl nibabel==5.4.2
#
# tests/conftest.py, which needs the book's packages (nbformat, papermill), is left out with --noconftest.
# Each step has its own time limit and writes its output under $OUT (default /tmp/device_check) as it
# goes, so a step that overruns leaves the others' results.
set -uo pipefail
out=${OUT:-/tmp/device_check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PWD:/tmp/site
fi

python3 -c "import os, numpy, torch; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), '
f'{torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\"}, NumPy {numpy.__version__}, '
f'{os.cpu_count()} CPUs')" 2>&1 | tee "$out/device.txt"

(cd tests && timeout 150 python3 -m pytest -q --noconftest -p no:cacheprovider test_dense_map.py) 2>&1 \
    | tee "$out/tests.txt"

timeout 200 python3 bench/bench_t1_mapping.py --steps lut table quadratic dense --no-memory \
    --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"

for chunk in 8192 32768 131072; do
    timeout 50 python3 bench/bench_t1_mapping.py --steps dense --no-memory --dense-chunk "$chunk" \
        --json "$out/chunk_$chunk.json" 2>&1 | tee -a "$out/chunks.txt"
done

timeout 60 python3 bench/bench_resnet.py 2>&1 | tee "$out/resnet.txt"
