#!/usr/bin/env bash
# Every GPU check in one command, for a machine with a CUDA GPU whose python3 already holds torch, Triton, pybind11,
# pytest and CMake, and where nothing can be installed (the device machine some development sessions are lent).
# It builds hso._C with CUDA in place (no pip), runs the backend agreement tests with the Triton kernels compiled
# for the GPU (TRITON_INTERPRET=0), then the GPU throughput benchmark. Each stage has its own time limit, so a slow
# stage still leaves the others their time; the whole script stays under about 9 minutes.
#
#   bash benchmarks/gpu_check.sh [OUT]      # OUT defaults to $OUT, else /tmp/hso-gpu
#
# Writes to OUT: gpu_env.txt, gpu_build.log, gpu_tests.log, gpu_bench.log, gpu_throughput.md, gpu_throughput.jsonl.
# Copy gpu_throughput.md and the tests' summary into benchmarks/results/ with the device named.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/hso-gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"

{
  date
  nvidia-smi
  $py -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'triton', triton.__version__,
          torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  nvcc --version
} >"$out/gpu_env.txt" 2>&1

# 1. hso._C with the CUDA kernels (the archs CMakeLists.txt names), copied next to the Python package
build=/tmp/hso-gpu-build
gen=$(command -v ninja >/dev/null && echo "-G Ninja")
pb=$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')
if ! timeout 240 bash -c "cmake -S . -B '$build' $gen -DCMAKE_BUILD_TYPE=Release -DHSO_CUDA=ON -Dpybind11_DIR='$pb' \
        -DPython_EXECUTABLE='$(command -v "$py")' && cmake --build '$build' -j \"$(nproc)\"" >"$out/gpu_build.log" 2>&1
then
  echo "hso gpu_check: the CUDA build failed; see gpu_build.log" | tee -a "$out/gpu_build.log"
  tail -30 "$out/gpu_build.log"
  exit 1
fi
cp "$build"/_C*.so hso/
$py -c "import hso._C as m; from hso import fast; print(m.build_info(), m.cuda_device_count()); fast.show_config()" \
  >>"$out/gpu_build.log" 2>&1
tail -12 "$out/gpu_build.log"

# 2. agreement tests of every backend, CUDA and compiled Triton included (parallel: Triton compiles per shape)
xdist=$($py -c 'import xdist' 2>/dev/null && echo "-n 8")
timeout 240 $py -m pytest -q -p no:cacheprovider -o addopts=-rs $xdist tests/test_backends.py tests/test_dmn_backends.py \
  tests/test_cpp_kernel.py tests/test_triton.py >"$out/gpu_tests.log" 2>&1
echo "tests exit status $?" >>"$out/gpu_tests.log"
tail -6 "$out/gpu_tests.log"

# 3. throughput of cpp (this machine's cores), cuda and triton, ratios against cpp
timeout 240 $py -m benchmarks.throughput --gpu --out "$out" >"$out/gpu_bench.log" 2>&1
echo "benchmark exit status $?" >>"$out/gpu_bench.log"
tail -4 "$out/gpu_bench.log"
