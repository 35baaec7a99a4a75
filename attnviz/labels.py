"""Class names for predictions, so top-5 reads as words and not indices."""

from __future__ import annotations

from functools import lru_cache

from attnviz.errors import SettingsError


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order, as torchvision ships them offline."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


def resolve_target(target: int | str | None, labels: tuple[str, ...]) -> int | None:
    """Accept a class index or a class name (case-insensitive); None means top-1."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return None
    if isinstance(target, str):
        text = target.strip()
        if text.lstrip("-").isdigit():
            target = int(text)
        else:
            lowered = text.lower()
            for i, name in enumerate(labels):
                if name.lower() == lowered:
                    return i
            close = [n for n in labels if lowered in n.lower()][:5]
            hint = f" (did you mean: {', '.join(close)})" if close else ""
            raise SettingsError(f"unknown class name {text!r}{hint}; give a name or an index")
    if not 0 <= int(target) < len(labels):
        raise SettingsError(
            f"class index {target} out of range; this model has classes 0..{len(labels) - 1}"
        )
    return int(target)
