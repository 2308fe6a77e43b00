#!/usr/bin/env bash
# The main job: install genclip-hf, then write anomaly maps and scores for the bundled sample images
# (examples/sample_images). With no GENCLIP_MODEL it runs training-free WinCLIP zero-shot on a stock CLIP from the Hub
# (openai/clip-vit-base-patch16); GENCLIP_MODEL picks another model: a trained GenCLIP, a converted AnomalyCLIP or any
# plain CLIP (Hub id or local folder). GENCLIP_THRESHOLD adds a pixel threshold (mask contours on the heatmaps).
# Output: ${GENCLIP_OUT:-outputs/samples}/{heatmaps/*.png, scores.csv, scores.json, index.html}.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/install.sh" | tail -n 1)"
cd "$repo"
options=()
if [ -n "${GENCLIP_THRESHOLD:-}" ]; then
    options+=(--threshold "$GENCLIP_THRESHOLD")
fi
"$venv/bin/genclip" predict examples/sample_images --model "${GENCLIP_MODEL:-openai/clip-vit-base-patch16}" \
    --out "${GENCLIP_OUT:-outputs/samples}" "${options[@]}" "$@"
