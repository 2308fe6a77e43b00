"""Training of any trainable detector with Accelerate (paper Sec. 3.3 and B.4; DESIGN §1).

- `arguments`: `TrainingArguments` and the command-line options.
- `data`: the training sources, rows as model inputs, the epoch order.
- `feature_cache`: frozen backbone features cached on disk.
- `checkpoints`: per-epoch checkpoints and exact resume.
- `loop`: `train`.
"""

from .arguments import TrainingArguments, add_training_arguments
from .checkpoints import latest_checkpoint
from .data import EpochShuffleSampler, TrainingSamples, collate_samples, open_training_data
from .loop import TrainingOutput, build_model, train

__all__ = [
    "EpochShuffleSampler",
    "TrainingArguments",
    "TrainingOutput",
    "TrainingSamples",
    "add_training_arguments",
    "build_model",
    "collate_samples",
    "latest_checkpoint",
    "open_training_data",
    "train",
]
