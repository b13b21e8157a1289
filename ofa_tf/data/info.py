"""What a data set tells a checkpoint (class names, input normalization) and the shared
constants; no TensorFlow here, so readers of saved metadata stay light."""

from __future__ import annotations

import dataclasses
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_CROP_RATIO = 0.875
SPLITS = ("train", "val")


@dataclasses.dataclass
class DatasetInfo:
    """What a checkpoint must remember about its data: class names and input normalization.

    `mean` and `std` are per RGB channel in [0, 1]-pixel units: a model input is
    ``(pixel / 255 - mean) / std``.
    """

    name: str
    class_names: list[str]
    n_train: int
    n_val: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if not self.class_names:
            raise ValueError(f"data set {self.name!r} has no classes")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples)."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        """Inverse of `to_dict`; keys it does not know are ignored so newer files still load."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})
