"""The one schema every loader produces, and the record a loader collects per image before building."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

NORMAL = 0
ANOMALOUS = 1

# `image` decodes to RGB and `mask` to "L" with values {0, 255} (255 = anomalous pixel), both at the
# image's own size. A normal image has an all-zero mask.
FEATURES = datasets.Features(
    {
        "image": datasets.Image(mode="RGB"),
        "mask": datasets.Image(mode="L"),
        "label": datasets.Value("int64"),
        "class_name": datasets.Value("string"),
        "defect_type": datasets.Value("string"),
        "image_path": datasets.Value("string"),
    }
)


@dataclass(frozen=True)
class Record:
    """One image as found on disk, before it becomes a dataset row.

    Args:
        image_path: absolute path of the image file.
        label: `NORMAL` (0) or `ANOMALOUS` (1).
        class_name: the class (category) name exactly as the benchmark spells it.
        defect_type: the defect folder or type name ("good", "ok", "crack", ...).
        image_size: `(width, height)` of the whole image file.
        mask_path: absolute path of the ground-truth mask file; `None` gives an all-zero mask.
        crop_box: `(left, upper, right, lower)` cut from both image and mask, or `None` for the whole image.
        mask_lossy: the mask file is lossy (JPEG): binarised at grey value 128 instead of "any non-zero".
    """

    image_path: str
    label: int
    class_name: str
    defect_type: str
    image_size: tuple[int, int]
    mask_path: str | None = None
    crop_box: tuple[int, int, int, int] | None = None
    mask_lossy: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """`(width, height)` of the row's image: the crop's size when cropped."""
        if self.crop_box is None:
            return self.image_size
        left, upper, right, lower = self.crop_box
        return (right - left, lower - upper)

    @property
    def row_id(self) -> str:
        """The `image_path` column: the file path, plus `#crop=l,u,r,b` for a crop."""
        if self.crop_box is None:
            return self.image_path
        return f"{self.image_path}#crop={','.join(str(v) for v in self.crop_box)}"
