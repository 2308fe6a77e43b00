"""Fast, exact anomaly-detection metrics (DESIGN §3): pixel AUROC, AUPRO, image AUROC and AP, and the exact
ROC and PRO curves behind them.

Metric functions raise `UndefinedMetricError` when a metric has no value for the data (e.g. image AUROC of a
class without normal images); `AnomalyMetricAccumulator` and the `evaluate` module store `nan` instead, record
the reason and emit an `UndefinedMetricWarning`.
"""

from pathlib import Path

from .accumulator import METRIC_NAMES, AnomalyMetricAccumulator
from .aupro import AUPRO_MODES, FPR_LIMIT, aupro
from .curves import ProCurve, RocCurve, image_roc_curve, pixel_roc_curve, pro_curve
from .errors import UndefinedMetricError, UndefinedMetricWarning
from .ranking import image_ap, image_auroc, pixel_auroc

EVALUATE_MODULE_PATH = str(Path(__file__).resolve().parent / "genclip_anomaly")
"""Directory of the `evaluate` module: `evaluate.load(EVALUATE_MODULE_PATH)` works offline."""

__all__ = [
    "AUPRO_MODES",
    "EVALUATE_MODULE_PATH",
    "FPR_LIMIT",
    "METRIC_NAMES",
    "AnomalyMetricAccumulator",
    "ProCurve",
    "RocCurve",
    "UndefinedMetricError",
    "UndefinedMetricWarning",
    "aupro",
    "image_ap",
    "image_auroc",
    "image_roc_curve",
    "pixel_auroc",
    "pixel_roc_curve",
    "pro_curve",
]
