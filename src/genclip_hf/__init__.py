"""Zero-shot industrial anomaly detection and localisation with CLIP on Hugging Face transformers: GenCLIP and the
methods of its Table 1 (WinCLIP, AnomalyCLIP, CLIP, CoOp) behind one detector contract.

Importing the package registers every detector with the Auto classes and [`AutoModelForAnomalyDetection`] (plus the
onnxruntime detector of exported folders, `genclip_hf.export`), and the "anomaly-detection" task with
`transformers.pipeline`. Saved GenCLIP checkpoints also carry their code (auto_map and custom_pipelines), so they load
with `trust_remote_code=True` where this package is not installed.
"""

from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_anomalyclip import AnomalyCLIPConfig
from .configuration_clip_baseline import CLIPBaselineConfig
from .configuration_coop import CoOpConfig
from .configuration_genclip import GenCLIPConfig
from .configuration_winclip import WinCLIPConfig
from .detection import (
    AnomalyDetectionOutput,
    AnomalyDetectorMixin,
    AutoModelForAnomalyDetection,
    register_detector,
)
from .modeling_anomalyclip import AnomalyCLIPModel
from .modeling_clip_baseline import CLIPBaselineModel
from .modeling_coop import CoOpModel
from .modeling_genclip import GenCLIPModel, GenCLIPOutput, GenCLIPVisionOutput
from .modeling_winclip import WinCLIPModel
from .pipeline_anomaly_detection import AnomalyDetectionPipeline
from .processing_anomaly_detection import AnomalyDetectionProcessor
from .processing_genclip import GenCLIPProcessor

__version__ = "0.1.0"

register_detector(GenCLIPConfig, GenCLIPModel, GenCLIPProcessor)
register_detector(WinCLIPConfig, WinCLIPModel, AnomalyDetectionProcessor)
register_detector(AnomalyCLIPConfig, AnomalyCLIPModel, AnomalyDetectionProcessor)
register_detector(CLIPBaselineConfig, CLIPBaselineModel, AnomalyDetectionProcessor)
register_detector(CoOpConfig, CoOpModel, AnomalyDetectionProcessor)
GenCLIPConfig.register_for_auto_class()
GenCLIPModel.register_for_auto_class("AutoModel")
GenCLIPProcessor.register_for_auto_class("AutoProcessor")
PIPELINE_REGISTRY.register_pipeline(
    "anomaly-detection",
    pipeline_class=AnomalyDetectionPipeline,
    pt_model=AutoModelForAnomalyDetection,
    type="multimodal",
)

from . import export  # noqa: E402  (registers the onnxruntime detector of exported folders)

__all__ = [
    "AnomalyCLIPConfig",
    "AnomalyCLIPModel",
    "AnomalyDetectionOutput",
    "AnomalyDetectionPipeline",
    "AnomalyDetectionProcessor",
    "AnomalyDetectorMixin",
    "AutoModelForAnomalyDetection",
    "CLIPBaselineConfig",
    "CLIPBaselineModel",
    "CoOpConfig",
    "CoOpModel",
    "GenCLIPConfig",
    "GenCLIPModel",
    "GenCLIPOutput",
    "GenCLIPProcessor",
    "GenCLIPVisionOutput",
    "WinCLIPConfig",
    "WinCLIPModel",
    "export",
    "register_detector",
]
