"""Fast inference and deployment: ONNX export of a detector's whole `detect`, its onnxruntime detector, int8 on the
CPU (onnxruntime or torch) and fp16/bf16 + `torch.compile` on a GPU.

Importing this package registers [`ONNXDetectorModel`] (model_type "onnx-anomaly-detector"), so an exported folder
loads with `pipeline("anomaly-detection", model=DIR)` and `genclip predict --model DIR`. onnx, onnxscript and
onnxruntime come with the `export` extra (`pip install 'genclip-hf[export]'`); they are imported only when used.

Example:

```python
>>> from genclip_hf.export import export_detector
>>> report = export_detector("path/to/genclip", "genclip-onnx", class_names=["metal plate", "bottle"], int8=True)
>>> report.max_map_difference  # the graph against torch's detect on a check image
```
"""

from ..detection import register_detector
from ..processing_anomaly_detection import AnomalyDetectionProcessor
from .configuration_onnx import ONNX_MODEL_TYPE, ONNXDetectorConfig
from .modeling_onnx import ONNX_PRECISIONS, ONNXDetectorModel
from .onnx_export import EXPORT_FORMATS, ExportReport, export_detector
from .recipes import RECIPES
from .runtime import OptionalDependencyError, quantize_onnx_graph
from .torch_fast import DEFAULT_INT8_BACKEND, PRECISIONS, resolve_precision

register_detector(ONNXDetectorConfig, ONNXDetectorModel, AnomalyDetectionProcessor)

EXPORTABLE_METHODS = tuple(RECIPES)
"""`model_type` of every method whose `detect` exports."""

__all__ = [
    "DEFAULT_INT8_BACKEND",
    "EXPORTABLE_METHODS",
    "EXPORT_FORMATS",
    "ONNX_MODEL_TYPE",
    "ONNX_PRECISIONS",
    "PRECISIONS",
    "ExportReport",
    "ONNXDetectorConfig",
    "ONNXDetectorModel",
    "OptionalDependencyError",
    "export_detector",
    "quantize_onnx_graph",
    "resolve_precision",
]
