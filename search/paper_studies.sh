#!/usr/bin/env bash
# HW-GPT-Bench's (arXiv 2405.10299) search studies on the packaged published benchmark:
# perplexity vs energy on each of its 8 GPUs (Figures 6 and 25) and perplexity x
# latency:rtx2080 x energy:a6000 (Figure 7); all seven algorithms, the presets' seeds and
# budget. Each study writes its tables and plots to OUT/<scale>/<study>/.
#   search/paper_studies.sh [SCALE=s] [OUT=runs/paper] [extra hwgpt search options...]
set -euo pipefail
scale="${1:-s}"
out="${2:-runs/paper}"
shift $(( $# > 2 ? 2 : $# ))
hwgpt="${HWGPT:-hwgpt}"
for gpu in a100 a40 h100 rtx2080 rtx3080 a6000 v100 P100; do
  $hwgpt search --preset paper_2obj_energy --published "$scale" \
    --objectives "perplexity,energy:$gpu" --out "$out/$scale/2obj_energy_$gpu" "$@"
done
$hwgpt search --preset paper_3obj --published "$scale" --out "$out/$scale/3obj" "$@"
