#!/usr/bin/env bash
# The GPU check (README "Embeddings", GPU), in two steps:
#   scripts/gpu-check.sh pack [DIR]  on the build machine: the `cuda` binary (make build-cuda),
#                                    xz-compressed, the model and 100,000 benchmark texts into DIR
#                                    (default gpu-check/, ~120 MB)
#   scripts/gpu-check.sh run [DIR]   on the GPU machine (no network needed): parity, embedding
#                                    speed against sentence-transformers on the same GPU, and GPU
#                                    top-K against the CPU kernel; prints one table (~5 minutes)
# `run` needs a Python with torch, sentence-transformers, numpy and pyarrow: $PYTHON (default
# python3), and the CUDA 13 libraries (cuBLAS, cuRAND, cudart) on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: gpu-check.sh pack|run [DIR]}
dir=${2:-gpu-check}
model=models/all-MiniLM-L6-v2
case "$step" in
  pack)
    bin=target-cuda/release/recjob
    [[ -x $bin ]] || ./scripts/build-cuda.sh
    [[ -d $model ]] || ./scripts/fetch-model.sh
    .venv/bin/python -c "import pyarrow" 2>/dev/null || ./scripts/pyenv.sh
    mkdir -p "$dir"
    strip -o "$dir/recjob" "$bin"
    xz -T0 -6 -f "$dir/recjob"
    cp -r "$model" "$dir/model"
    .venv/bin/python - "$dir/texts.parquet" <<'PY'
import sys
sys.path.insert(0, "scripts")
import pyarrow as pa, pyarrow.parquet as pq
from titles import make_titles
pq.write_table(pa.table({"text": make_titles(100_000)}), sys.argv[1])
PY
    du -sh "$dir"
    echo "packed $dir: copy it and scripts/ to the GPU machine, then run: scripts/gpu-check.sh run $dir"
    ;;
  run)
    [[ -x $dir/recjob ]] || xz -dkf "$dir/recjob.xz"
    chmod +x "$dir/recjob"
    nvidia-smi -L
    exec "${PYTHON:-python3}" scripts/gpu_check.py --recjob "$dir/recjob" --model "$dir/model" \
      --texts "$dir/texts.parquet"
    ;;
  *) echo "usage: gpu-check.sh pack|run [DIR]" >&2; exit 2 ;;
esac
