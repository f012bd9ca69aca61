#!/usr/bin/env bash
# Every GPU check in one command, for a machine with a CUDA GPU whose python3 already holds torch, Triton, pybind11,
# pytest and CMake, and where nothing can be installed (the device machine some development sessions are lent).
# It builds hso._C with CUDA in place (no pip), runs the backend agreement tests with the Triton kernels compiled
# for the GPU (TRITON_INTERPRET=0: among them N = 1 and B = 1, which Triton specialises, the DM-NonUniform lower
# level against the C++ kernel, the sm_90 compile check that scans the IR for float32 and 3-D scans, and
# lower_solve_many's one-launch CUDA kernel and per-configuration Triton launches against their per-problem calls),
# then the GPU throughput benchmark, then many searches in one pass (the library's grid under method "hso", preset
# by preset on cuda, triton and cpp). Each stage has its own time limit, so a slow stage still leaves the others
# their time: with the default limits the whole script ends within 8.9 minutes.
#
#   bash benchmarks/gpu_check.sh [OUT]      # OUT defaults to $OUT, else /tmp/hso-gpu
#
# Stage limits in seconds (environment): HSO_GPU_BUILD_S=130, HSO_GPU_TESTS_S=210, HSO_GPU_BENCH_S=100,
# HSO_GPU_MANY_S=90; a limit of 0 skips that stage. Writes to OUT: gpu_env.txt, gpu_build.log, gpu_tests.log (the
# pytest log, its summary at the end), gpu_bench.log, gpu_throughput.md, gpu_throughput.jsonl, auto_rule.json /
# auto_rule.md (the batch rule of backend="auto" the table gives), many_searches.md / .jsonl and gpu_many.log.
# Copy gpu_throughput.md, many_searches.md and the tests' summary into benchmarks/results/gpu/ with the device
# named, and re-derive the rule from it (benchmarks/auto_rule.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/hso-gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
build_s=${HSO_GPU_BUILD_S:-130}
tests_s=${HSO_GPU_TESTS_S:-210}
bench_s=${HSO_GPU_BENCH_S:-100}
many_s=${HSO_GPU_MANY_S:-90}
# a fresh Triton cache: every kernel is compiled by this run, for this Triton
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
  TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$(mktemp -d /tmp/hso-triton-cache.XXXXXX)}"
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
start=$SECONDS
stage() { echo "hso gpu_check: $1 (${SECONDS}s since start; limit ${2}s)"; }

{
  date
  nvidia-smi
  $py -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'triton', triton.__version__,
          torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  nvcc --version
} >"$out/gpu_env.txt" 2>&1

# 1. hso._C with the CUDA kernels (the archs CMakeLists.txt names), copied next to the Python package
if [ "$build_s" -gt 0 ]; then
  stage build "$build_s"
  build=/tmp/hso-gpu-build
  gen=$(command -v ninja >/dev/null && echo "-G Ninja")
  pb=$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')
  if ! timeout "$build_s" bash -c "cmake -S . -B '$build' $gen -DCMAKE_BUILD_TYPE=Release -DHSO_CUDA=ON \
          -Dpybind11_DIR='$pb' -DPython_EXECUTABLE='$(command -v "$py")' && cmake --build '$build' -j \"$(nproc)\"" \
          >"$out/gpu_build.log" 2>&1
  then
    echo "hso gpu_check: the CUDA build failed or ran past ${build_s}s; see gpu_build.log" | tee -a "$out/gpu_build.log"
    tail -30 "$out/gpu_build.log"
    exit 1
  fi
  cp "$build"/_C*.so hso/
  $py -c "import hso._C as m; from hso import fast; print(m.build_info(), m.cuda_device_count()); fast.show_config()" \
    >>"$out/gpu_build.log" 2>&1
  tail -12 "$out/gpu_build.log"
fi

# 2. agreement tests of every backend, CUDA and compiled Triton included (parallel: Triton compiles per constexpr
#    set). The Triton file goes first; SIGINT at the limit makes pytest stop and still print its summary.
if [ "$tests_s" -gt 0 ]; then
  stage tests "$tests_s"
  xdist=$($py -c 'import xdist' 2>/dev/null && echo "-n 8")
  timeout -s INT -k 20 "$tests_s" $py -m pytest -q -p no:cacheprovider -o addopts= -rfEs $xdist \
    tests/test_triton.py tests/test_agreement.py tests/test_backends.py tests/test_dmn_backends.py \
    tests/test_cpp_kernel.py tests/test_lower_many.py \
    >"$out/gpu_tests.log" 2>&1
  echo "tests exit status $? (${SECONDS}s since start)" >>"$out/gpu_tests.log"
  grep -E "^(FAILED|ERROR) " "$out/gpu_tests.log" | head -40
  tail -3 "$out/gpu_tests.log"
fi

# 3. throughput of cpp (this machine's cores), cuda and triton, ratios against cpp (3 repeats: within the limit)
if [ "$bench_s" -gt 0 ]; then
  stage bench "$bench_s"
  timeout -s INT -k 10 "$bench_s" $py -m benchmarks.throughput --gpu --repeats 3 --out "$out" >"$out/gpu_bench.log" 2>&1
  echo "benchmark exit status $? (${SECONDS}s since start)" >>"$out/gpu_bench.log"
  tail -4 "$out/gpu_bench.log"
fi
# 4. the batch rule of backend="auto" this run's table gives (a candidate: commit it as hso/fast/auto_rule.json, via
#    python -m benchmarks.auto_rule --table ..., only with --verified naming the backends and objectives whose
#    agreement tests all passed above; HSO_GPU_VERIFIED sets that list here, default every GPU backend)
if [ -s "$out/gpu_throughput.md" ]; then
  read -r -a verified <<<"${HSO_GPU_VERIFIED:-cuda:*:* triton:*:*}"  # split on spaces, never globbed
  $py -m benchmarks.auto_rule --table "$out/gpu_throughput.md" --verified "${verified[@]}" \
    --out "$out" >"$out/auto_rule.log" 2>&1 || echo "hso gpu_check: auto rule failed; see auto_rule.log"
  tail -25 "$out/auto_rule.md" 2>/dev/null
fi
# 5. many searches in one pass: one optimize_many per preset over the library's grid with method "hso" (every round
#    one lower_solve_many launch on cuda, one per kernel configuration on triton), preset by preset on cuda, triton
#    (made twice, the second timed: the first compiles) and cpp on this machine's cores, while time is left; each
#    finished run appends a row to many_searches.md
if [ "$many_s" -gt 0 ]; then
  stage many "$many_s"
  timeout -s INT -k 5 "$many_s" bash -c 'for p in sd21 edm flow sd15 ddpm vp_linear vp_cosine sdxl; do
    for b in cuda triton cpp; do
      runs=1; [ "$b" = triton ] && runs=2
      "$1" -m benchmarks.many_searches --backend "$b" --runs "$runs" --presets "$p" --out "$2" \
        || echo "many_searches failed: $b $p"
    done; done' _ "$py" "$out" \
    >"$out/gpu_many.log" 2>&1
  echo "many searches exit status $? (${SECONDS}s since start)" >>"$out/gpu_many.log"
  tail -12 "$out/many_searches.md" 2>/dev/null
fi
echo "hso gpu_check: done in $((SECONDS - start))s; logs in $out"
