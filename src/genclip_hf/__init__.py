"""GenCLIP zero-shot industrial anomaly detection on Hugging Face transformers.

Importing the package registers the "genclip" model type with `AutoConfig`, `AutoModel` and `AutoProcessor` and the
"anomaly-detection" task with `transformers.pipeline`. Saved checkpoints also carry their code (auto_map and
custom_pipelines), so they load with `trust_remote_code=True` where this package is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_genclip import GenCLIPConfig
from .modeling_genclip import GenCLIPModel, GenCLIPOutput, GenCLIPVisionOutput
from .pipeline_anomaly_detection import AnomalyDetectionPipeline
from .processing_genclip import GenCLIPProcessor

__version__ = "0.1.0"

AutoConfig.register("genclip", GenCLIPConfig, exist_ok=True)
AutoModel.register(GenCLIPConfig, GenCLIPModel, exist_ok=True)
AutoProcessor.register(GenCLIPConfig, GenCLIPProcessor, exist_ok=True)
GenCLIPConfig.register_for_auto_class()
GenCLIPModel.register_for_auto_class("AutoModel")
GenCLIPProcessor.register_for_auto_class("AutoProcessor")
PIPELINE_REGISTRY.register_pipeline(
    "anomaly-detection", pipeline_class=AnomalyDetectionPipeline, pt_model=GenCLIPModel, type="multimodal"
)

__all__ = [
    "AnomalyDetectionPipeline",
    "GenCLIPConfig",
    "GenCLIPModel",
    "GenCLIPOutput",
    "GenCLIPProcessor",
    "GenCLIPVisionOutput",
]
