"""How a metric says that it is undefined for the data it was given."""

from __future__ import annotations


class UndefinedMetricError(ValueError):
    """A metric has no value for the given data (e.g. image AUROC of a class without normal images).

    The metric functions raise it instead of returning a placeholder such as 0.5; the accumulator and the
    `evaluate` module catch it, store `nan` and keep `reason` so reports can say why.
    """

    def __init__(self, metric: str, reason: str):
        super().__init__(f"{metric} is undefined: {reason}")
        self.metric = metric
        self.reason = reason


class UndefinedMetricWarning(UserWarning):
    """Emitted by the aggregating APIs when a per-class metric is undefined and is stored as `nan`."""
