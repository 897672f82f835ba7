#!/usr/bin/env bash
# Build recjob with the `cuda` feature on a machine with neither a GPU nor a CUDA toolkit, for GPU
# machines whose driver runs CUDA 13.0 or newer.
#
#   scripts/build-cuda.sh           # optimised binary; its path is the last line printed
#   scripts/build-cuda.sh --check   # `cargo check --features cuda` only: API drift, before a GPU lease
#
# What it does: installs the pinned CUDA 13.0 toolchain from PyPI into a cache directory (nvcc
# must not be newer than the GPU driver's CUDA, or the driver refuses the PTX), gives the
# libraries the unversioned names the linker looks for, makes a link-time stub of the driver
# library `libcuda.so.1` (no wheel ships it; at run time the GPU machine's own driver is loaded),
# and builds into its own target directory: turning `cuda` on changes feature unification, so
# sharing `target/` would rebuild the whole CPU graph. Cold: ~40 minutes on 2 cores (half of it
# nvcc compiling candle's kernels); `--check` 19 minutes cold (measured).
#
# Environment: RECJOB_CUDA_CACHE (default ~/.cache/recjob-cuda), CUDA_COMPUTE_CAP (default 90:
# H100, H200), CUDA_TARGET_DIR (default target-cuda).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
cache=${RECJOB_CUDA_CACHE:-$HOME/.cache/recjob-cuda}
cap=${CUDA_COMPUTE_CAP:-90}
target=${CUDA_TARGET_DIR:-target-cuda}

# 1. The toolchain: CUDA 13.0 (driver 580) from PyPI, pinned.
venv=$cache/cuda-13.0
if [ ! -e "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
  touch "$venv/.complete"
fi
C=$(echo "$venv"/lib/python3.*/site-packages/nvidia/cu13)
test -x "$C/bin/nvcc" || { echo "no nvcc under $C" >&2; exit 1; }

# 2. Unversioned library names for the linker (libcublas.so -> libcublas.so.13, ...).
for lib in cublas cublasLt curand nvrtc cudart; do
  found=$(ls "$C"/lib/lib$lib.so.* 2>/dev/null | sort | head -1)
  test -n "$found" || { echo "no lib$lib.so.* under $C/lib" >&2; exit 1; }
  ln -sf "$(basename "$found")" "$C/lib/lib$lib.so"
done

# 3. A stub libcuda.so.1 with every driver entry point cudarc declares, as empty functions.
cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
stub=$C/lib/libcuda.so
if [ ! -e "$stub" ]; then
  grep -hoE '\bfn cu[A-Za-z0-9_]+' "$cudarc"/src/driver/sys/*.rs | sort -u \
    | awk '{print "void " $2 "(void) {}"}' > "$cache/libcuda-stub.c"
  test -s "$cache/libcuda-stub.c" || { echo "no driver functions found in $cudarc" >&2; exit 1; }
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$cache/libcuda-stub.c"
fi

# 4. The build, in its own target directory.
export PATH=$C/bin:$PATH CUDA_HOME=$C CUDA_PATH=$C CUDA_ROOT=$C LIBRARY_PATH=$C/lib
export CUDA_COMPUTE_CAP=$cap CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=$target
if [ "$mode" = check ]; then
  cargo check --features cuda --bins
  echo "cargo check --features cuda: ok (target dir $target)"
  exit 0
fi
cargo build --release --features cuda --bins
bin=$target/release/recjob
echo "Run it on the GPU machine with the CUDA 13 libraries beside the driver, e.g."
echo "  LD_LIBRARY_PATH=<dir with libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libcudart.so.13>:/usr/local/nvidia/lib64 $bin ..."
echo "(this toolchain's copies are in $C/lib)"
echo "$bin"
