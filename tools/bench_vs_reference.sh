#!/usr/bin/env bash
# DermGAN at 256 px against the PyTorch reference pix2pix, in interleaved rounds on one machine (issue 7).
#
#   tools/bench_vs_reference.sh [ROUNDS] [OUT_DIR]
#
# Each round runs tools/bench.py (DermGAN, alternating and simultaneous, mixed_bfloat16, batches 1 and 4, and the
# matmul peak) in a fresh process, then tools/bench_pix2pix_reference.py (bfloat16 and float32, both memory layouts), and prints
# that round's ratio table; interleaving keeps a slow spell of the machine from landing on one side only.
# PYTHON (default: python) runs keras-medgan; TORCH_PYTHON (default: python) must have torch installed, e.g.
#   python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
#   TORCH_PYTHON=/tmp/torchvenv/bin/python tools/bench_vs_reference.sh 3 bench-vs-ref
set -euo pipefail
rounds="${1:-3}"
out="${2:-bench-vs-reference}"
python="${PYTHON:-python}"
torch_python="${TORCH_PYTHON:-python}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! "$torch_python" -c "import torch" 2>/dev/null; then
  echo "error: TORCH_PYTHON=$torch_python cannot import torch; point TORCH_PYTHON at a Python with PyTorch" >&2
  exit 2
fi
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  "$python" "$here/bench.py" --what steps,peak --models dermgan256,dermgansim256 --precision mixed_bfloat16 \
    --batch-sizes 1,4 --steps 15 --warmup 3 --json "$out/ours-$r.json" --markdown "$out/ours-$r.md" \
    > "$out/ours-$r.log" 2>&1
  "$torch_python" "$here/bench_pix2pix_reference.py" --precision bfloat16,float32 \
    --layouts channels_last,contiguous --steps 15 --warmup 3 --json "$out/reference-$r.json" \
    > "$out/reference-$r.log" 2>&1
  echo "round $r:"
  "$python" "$here/bench.py" --reference "$out/reference-$r.json" --current "$out/ours-$r.json"
done
