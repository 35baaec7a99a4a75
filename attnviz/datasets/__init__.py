"""Datasets with ground truth for training attention models and measuring where they look."""

from __future__ import annotations

from attnviz.datasets.procedural import (
    CLASS_NAMES,
    IMAGE_SIZE,
    ProceduralDataset,
    ProceduralSample,
    sample,
    sample_batch,
)

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "ProceduralDataset",
    "ProceduralSample",
    "sample",
    "sample_batch",
]
