#!/usr/bin/env bash
# The main job: install genclip-hf, then write anomaly maps and scores for the bundled sample images
# (examples/sample_images) with the GenCLIP checkpoint named by GENCLIP_MODEL (a Hub id or a local folder).
# Output: ${GENCLIP_OUT:-outputs/samples}/{heatmaps/*.png, scores.csv, scores.json, index.html}.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${GENCLIP_MODEL:-}" ]; then
    echo "GENCLIP_MODEL is not set. Set it to a trained GenCLIP checkpoint: a Hub id or a local folder written by" >&2
    echo "'genclip train' (this project ships no trained weights; see README 'Training')." >&2
    exit 2
fi
venv="$(bash "$repo/scripts/install.sh" | tail -n 1)"
cd "$repo"
"$venv/bin/genclip" predict examples/sample_images --model "$GENCLIP_MODEL" \
    --out "${GENCLIP_OUT:-outputs/samples}" --threshold "${GENCLIP_THRESHOLD:-2.0}" "$@"
