"""GenCLIP zero-shot industrial anomaly detection on Hugging Face transformers.

Importing the package registers every detector ("genclip", and the baselines) with the Auto classes and
[`AutoModelForAnomalyDetection`], and the "anomaly-detection" task with `transformers.pipeline`. Saved GenCLIP
checkpoints also carry their code (auto_map and custom_pipelines), so they load with `trust_remote_code=True` where
this package is not installed.
"""

from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_genclip import GenCLIPConfig
from .detection import (
    AnomalyDetectionOutput,
    AnomalyDetectorMixin,
    AutoModelForAnomalyDetection,
    register_detector,
)
from .modeling_genclip import GenCLIPModel, GenCLIPOutput, GenCLIPVisionOutput
from .pipeline_anomaly_detection import AnomalyDetectionPipeline
from .processing_anomaly_detection import AnomalyDetectionProcessor
from .processing_genclip import GenCLIPProcessor

__version__ = "0.1.0"

register_detector(GenCLIPConfig, GenCLIPModel, GenCLIPProcessor)
GenCLIPConfig.register_for_auto_class()
GenCLIPModel.register_for_auto_class("AutoModel")
GenCLIPProcessor.register_for_auto_class("AutoProcessor")
PIPELINE_REGISTRY.register_pipeline(
    "anomaly-detection",
    pipeline_class=AnomalyDetectionPipeline,
    pt_model=AutoModelForAnomalyDetection,
    type="multimodal",
)

__all__ = [
    "AnomalyDetectionOutput",
    "AnomalyDetectionPipeline",
    "AnomalyDetectionProcessor",
    "AnomalyDetectorMixin",
    "AutoModelForAnomalyDetection",
    "GenCLIPConfig",
    "GenCLIPModel",
    "GenCLIPOutput",
    "GenCLIPProcessor",
    "GenCLIPVisionOutput",
    "register_detector",
]

from .configuration_winclip import WinCLIPConfig  # noqa: E402
from .modeling_winclip import WinCLIPModel  # noqa: E402

register_detector(WinCLIPConfig, WinCLIPModel, AnomalyDetectionProcessor)
__all__ += ["WinCLIPConfig", "WinCLIPModel"]

from .configuration_anomalyclip import AnomalyCLIPConfig  # noqa: E402
from .modeling_anomalyclip import AnomalyCLIPModel  # noqa: E402

register_detector(AnomalyCLIPConfig, AnomalyCLIPModel, AnomalyDetectionProcessor)
__all__ += ["AnomalyCLIPConfig", "AnomalyCLIPModel"]
