"""attnviz: see what the attention modules inside a CNN attend to.

``load_model`` builds a zoo model with its weights; ``analyze`` runs one image through it and
returns an ``Analysis`` (numpy only) with top-5 predictions, every attention record and CAMs.
``keep_freed_memory`` (once per process; the app and the CLI call it) makes repeated analyses
on CPU much faster under glibc.
"""

from attnviz.analysis import Analysis, AttentionRecord, Prediction, analyze, analyze_batch
from attnviz.errors import AttnvizError
from attnviz.loader import LoadedModel, load_model
from attnviz.memory import keep_freed_memory
from attnviz.zoo import DEFAULT_MODEL_ID, list_specs

__version__ = "0.1.0"

__all__ = [
    "Analysis", "AttentionRecord", "AttnvizError", "DEFAULT_MODEL_ID", "LoadedModel",
    "Prediction", "analyze", "analyze_batch", "keep_freed_memory", "list_specs", "load_model",
    "__version__",
]
