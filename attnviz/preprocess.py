"""From an RGB array to the tensor a model expects.

The whole photo is resized to the model's square input (no centre crop) so that every map
lines up with the full picture the user uploaded; overlays are then stretched back to the
photo's own aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bicubic"

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The model's view of the photo as uint8 RGB (size x size)."""
        mode = Image.Resampling.BICUBIC if self.resample == "bicubic" else Image.Resampling.BILINEAR
        pil = Image.fromarray(np.ascontiguousarray(image[..., :3]), mode="RGB")
        return np.asarray(pil.resize((self.size, self.size), mode), dtype=np.uint8)

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """A normalised (B,3,size,size) float batch."""
        batch = np.stack([self.resize(im) for im in images]).astype(np.float32) / 255.0
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        batch = (batch - mean) / std
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))

    def as_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "resample": self.resample, "crop": "none (whole image resized)"}
