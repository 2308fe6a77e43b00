"""The browser demo as a Hugging Face Space (what `genclip demo` serves): upload images, pick the class name, the
detection settings and the thresholds, see each image beside its anomaly-map overlay with its score and label.

    GENCLIP_MODEL=path/or/hub-id python examples/app.py

On a Space (Gradio SDK), copy this file to the Space as `app.py` and `space_requirements.txt` as `requirements.txt`,
and set the Space variable GENCLIP_MODEL (default: a stock CLIP, training-free WinCLIP). A model folder's
`calibration.json` (`genclip calibrate`) gives the default thresholds. It runs on the CPU.
"""

from __future__ import annotations

import os

from genclip_hf.demo import build_demo
from genclip_hf.detection import DEFAULT_DETECTOR
from genclip_hf.predict import load_detector

MODEL = os.environ.get("GENCLIP_MODEL", DEFAULT_DETECTOR)

demo = build_demo(load_detector(MODEL, device="cpu"))

if __name__ == "__main__":
    demo.launch()
