"""A user's labelled image folder (one subfolder per class), optionally with masks.

Layout: ``ROOT/<class>/<image>``, or ``ROOT/train/<class>/...`` plus ``ROOT/val/<class>/...``
(``heldout`` and ``test`` are accepted for ``val``) when the user already split the data.
Without a split, a fixed share per class is held out, chosen by the seed. Every file goes
through ``attnviz.inputs.load_image``, the same guarded decoder the app uses for uploads,
so a folder of strangers' files is no more dangerous than one upload. Images are resized once
to the model's square input and kept in memory: this is for small fine-tuning sets.

Masks (for ``attnviz evaluate``): a second folder with the same relative paths, any image
extension; nonzero pixels are the object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError, SettingsError
from attnviz.inputs import SUPPORTED_SUFFIXES
from attnviz.preprocess import Preprocessing

IMAGE_SUFFIXES = {f".{suffix}" for suffix in SUPPORTED_SUFFIXES}
_VAL_NAMES = ("val", "heldout", "test")


@dataclass
class FolderSplit:
    """Images resized to the model input (N,S,S,3) uint8, labels (N,), masks (N,S,S) or None."""

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    paths: list[Path] = field(repr=False)
    masks: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FolderData:
    root: Path
    classes: tuple[str, ...]
    train: FolderSplit
    heldout: FolderSplit
    skipped: list[str]  # "path: reason" for files that could not be used
    presplit: bool

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(self.root), "classes": len(self.classes),
                "train_images": len(self.train), "heldout_images": len(self.heldout),
                "split": "given (train/val folders)" if self.presplit else "by seed, per class",
                "skipped_files": len(self.skipped)}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _mask_for(image: Path, root: Path, masks: Path) -> Path | None:
    rel = image.relative_to(root).with_suffix("")
    for suffix in (".png", *sorted(IMAGE_SUFFIXES)):
        candidate = masks / rel.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _load_split(
    root: Path, items: list[tuple[Path, int]], prep: Preprocessing, masks: Path | None,
    skipped: list[str],
) -> FolderSplit:
    from PIL import Image

    from attnviz.inputs import load_image

    images, labels, paths, mask_list = [], [], [], []
    for path, label in items:
        try:
            view = prep.resize(load_image(path).array)
            mask = None
            if masks is not None:
                mpath = _mask_for(path, root, masks)
                if mpath is None:
                    raise SettingsError("no mask file for it")
                raw = load_image(mpath).array.max(axis=2)
                mask = np.asarray(Image.fromarray(raw).resize((prep.size, prep.size),
                                                               Image.Resampling.NEAREST)) > 0
        except AttnvizError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        images.append(view)
        labels.append(label)
        paths.append(path)
        mask_list.append(mask)
    shape = (0, prep.size, prep.size)
    return FolderSplit(
        images=np.stack(images) if images else np.zeros((*shape, 3), np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        paths=paths,
        masks=(np.stack(mask_list) if mask_list else np.zeros(shape, bool))
        if masks is not None else None,
    )


def load_folder(
    root: str | os.PathLike,
    prep: Preprocessing,
    *,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    masks: str | os.PathLike | None = None,
) -> FolderData:
    """Read a class-per-subfolder dataset into memory, split into train and held-out."""
    root = Path(root)
    if not root.is_dir():
        raise SettingsError(f"data folder {str(root)!r} does not exist or is not a folder")
    if not 0.0 < heldout_fraction < 1.0:
        raise SettingsError(f"held-out fraction must be between 0 and 1, got {heldout_fraction}")
    mask_root = Path(masks) if masks is not None else None
    if mask_root is not None and not mask_root.is_dir():
        raise SettingsError(f"mask folder {str(mask_root)!r} does not exist or is not a folder")
    top = {p.name: p for p in _class_dirs(root)}
    val_dir = next((top[n] for n in _VAL_NAMES if n in top), None)
    presplit = "train" in top and val_dir is not None
    train_root = top["train"] if presplit else root
    classes = tuple(p.name for p in _class_dirs(train_root))
    if len(classes) < 2:
        raise SettingsError(
            f"data folder {str(train_root)!r} needs at least two class subfolders, "
            f"found {len(classes)}"
        )
    index = {c: i for i, c in enumerate(classes)}
    train_items: list[tuple[Path, int]] = []
    val_items: list[tuple[Path, int]] = []
    rng = np.random.default_rng(seed)
    for name in classes:
        files = _files(train_root / name)
        if presplit:
            train_items += [(f, index[name]) for f in files]
            val_items += [(f, index[name]) for f in _files(val_dir / name)]
            continue
        order = rng.permutation(len(files))
        n_val = max(1, round(len(files) * heldout_fraction)) if len(files) > 1 else 0
        val_items += [(files[i], index[name]) for i in order[:n_val]]
        train_items += [(files[i], index[name]) for i in order[n_val:]]
    skipped: list[str] = []
    train = _load_split(root, train_items, prep, mask_root, skipped)
    heldout = _load_split(root, val_items, prep, mask_root, skipped)
    if len(train) == 0 or len(heldout) == 0:
        raise SettingsError(
            f"data folder {str(root)!r} gave {len(train)} training and {len(heldout)} held-out "
            f"images ({len(skipped)} skipped); need at least one of each"
        )
    return FolderData(root=root, classes=classes, train=train, heldout=heldout,
                      skipped=skipped, presplit=presplit)


def load_labelled(
    root: str | os.PathLike, prep: Preprocessing, masks: str | os.PathLike
) -> tuple[FolderSplit, tuple[str, ...]]:
    """Every image of a class-per-subfolder folder with its mask, for evaluation.

    With ``train/`` and ``val/`` inside, only the held-out ``val/`` images are used.
    """
    root = Path(root)
    if not root.is_dir():
        raise SettingsError(f"data folder {str(root)!r} does not exist or is not a folder")
    mask_root = Path(masks)
    if not mask_root.is_dir():
        raise SettingsError(f"mask folder {str(mask_root)!r} does not exist or is not a folder")
    top = {p.name: p for p in _class_dirs(root)}
    val_dir = next((top[n] for n in _VAL_NAMES if n in top), None)
    folder = val_dir if "train" in top and val_dir is not None else root
    classes = tuple(p.name for p in _class_dirs(folder))
    items = [(f, i) for i, name in enumerate(classes) for f in _files(folder / name)]
    skipped: list[str] = []
    split = _load_split(root, items, prep, mask_root, skipped)
    if len(split) == 0:
        raise SettingsError(f"no usable image with a mask in {str(folder)!r} "
                            f"({len(skipped)} skipped; first: {skipped[0] if skipped else '-'})")
    return split, classes
