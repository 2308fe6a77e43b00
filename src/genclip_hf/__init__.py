"""GenCLIP zero-shot industrial anomaly detection on Hugging Face transformers.

Importing the package registers the "genclip" model type with `AutoConfig`, `AutoModel` and `AutoProcessor`.
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .configuration_genclip import GenCLIPConfig
from .modeling_genclip import GenCLIPModel, GenCLIPOutput, GenCLIPVisionOutput
from .processing_genclip import GenCLIPProcessor

__version__ = "0.1.0"

AutoConfig.register("genclip", GenCLIPConfig, exist_ok=True)
AutoModel.register(GenCLIPConfig, GenCLIPModel, exist_ok=True)
AutoProcessor.register(GenCLIPConfig, GenCLIPProcessor, exist_ok=True)

__all__ = [
    "GenCLIPConfig",
    "GenCLIPModel",
    "GenCLIPOutput",
    "GenCLIPProcessor",
    "GenCLIPVisionOutput",
]
