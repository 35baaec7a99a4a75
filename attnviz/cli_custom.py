"""CLI for your own models: the ``analyze`` options and the ``inspect`` subcommand.

``--factory`` runs your Python code (the file or module you name); ``--torchscript`` runs the
compiled program in the file; ``--timm`` builds timm's architecture. See ``attnviz.custom``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

FACTORY_HELP = ("your model's factory, path/to/file.py:function or package.module:function "
                "(RUNS that code)")


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Where a user's own model comes from, and how to read its attention."""
    g = p.add_argument_group("your own model (instead of --model)")
    g.add_argument("--factory", metavar="SPEC", help=FACTORY_HELP)
    g.add_argument("--factory-kwargs", metavar="JSON",
                   help='keyword arguments for the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--torchscript", metavar="FILE",
                   help="a TorchScript model file (its compiled program runs; no Python code)")
    g.add_argument("--timm", metavar="NAME", help="a timm model name (weights from the HF cache)")
    g.add_argument("--allow-random", action="store_true",
                   help="with --timm: run with random weights when none are cached")
    g.add_argument("--num-classes", type=int, help="with --timm: size of the classifier")
    g.add_argument("--labels", metavar="FILE", help="class names, one per line")
    g.add_argument("--input-size", type=int, metavar="N", help="square input size (default 224)")
    g.add_argument("--attention", action="append", default=[], metavar="LAYER=KIND",
                   help="force how a layer is read (se, cam, eca, sam, simam[:LAMBDA], gate3d, "
                        "bam) or hide it (none); repeatable")
    g.add_argument("--no-detect", action="store_true",
                   help="find attention by type only (no behaviour detection)")


def is_custom(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "factory", None) or getattr(args, "torchscript", None)
                or getattr(args, "timm", None))


def load_from_args(args: argparse.Namespace):
    """A ``LoadedModel`` for ``analyze``/``inspect``: the user's own model, or the zoo's."""
    from attnviz.errors import SettingsError
    from attnviz.zoo import DEFAULT_MODEL_ID

    if not is_custom(args):
        for flag in ("factory_kwargs", "labels", "input_size", "num_classes", "attention"):
            if getattr(args, flag, None):
                raise SettingsError(f"--{flag.replace('_', '-')} applies only to --factory, "
                                    "--torchscript or --timm")
        from attnviz.loader import load_model

        return load_model(args.model or DEFAULT_MODEL_ID, checkpoint=args.checkpoint,
                          device=args.device)
    if args.model not in (None, DEFAULT_MODEL_ID):
        raise SettingsError("--model cannot be combined with --factory, --torchscript or --timm")
    if args.factory_kwargs and not args.factory:
        raise SettingsError("--factory-kwargs needs --factory")
    from attnviz.custom import load_custom_model

    return load_custom_model(
        factory=args.factory, factory_kwargs=args.factory_kwargs, checkpoint=args.checkpoint,
        torchscript=args.torchscript, timm_name=args.timm, num_classes=args.num_classes,
        labels=args.labels, input_size=args.input_size, device=args.device,
        detect=not args.no_detect, overrides=list(args.attention or []),
        allow_random=args.allow_random,
        **({"min_confidence": args.min_confidence}
           if getattr(args, "min_confidence", None) is not None else {}),
    )


def shown_layers(args: argparse.Namespace, model) -> list[str] | None:
    """The attention layers whose records ``analyze`` writes (``--only``), None for all."""
    from attnviz.custom import check_layers

    only = list(getattr(args, "only", None) or [])
    if only:
        return check_layers(model, only)
    if is_custom(args):  # hides attnviz's own modules a user set to "none"
        return [f.layer for f in model.attention]
    return None


def add_inspect_parser(sub) -> None:
    from attnviz.devices import DEVICE_CHOICES

    i = sub.add_parser("inspect", help="list the attention modules found in a model "
                                       "(by type and by behaviour)")
    i.add_argument("--model", default=None, help="zoo id (or use --factory/--torchscript/--timm)")
    i.add_argument("--checkpoint", help="weights for --factory or --timm")
    i.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    i.add_argument("--min-confidence", type=float, default=None,
                   help="also list behaviour findings from this confidence on (default 0.5)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_source_arguments(i)


def cmd_inspect(args: argparse.Namespace) -> int:
    from attnviz.custom import attention_table

    if is_custom(args):
        model = load_from_args(args)
        info: dict[str, Any] = {"model": model.id, "weights": model.weights,
                                "cam_layer": model.cam_layer, "notes": list(model.notes)}
        rows = attention_table(model)
    else:
        info, rows = _inspect_zoo(args)
    if args.json:
        print(json.dumps({**info, "attention": rows}, indent=2))
        return 0
    print(f"# {info['model']}: {info['weights']}; CAM layer {info['cam_layer'] or '(none)'}")
    for note in info["notes"]:
        print(f"# note: {note}")
    if not rows:
        print("no attention modules found")
        return 0
    widths = [max(len(h), *(len(str(r[k])) for r in rows))
              for h, k in (("layer", "layer"), ("kind", "kind"), ("how", "how"))]
    print(f"{'layer'.ljust(widths[0])}  {'kind'.ljust(widths[1])}  {'how'.ljust(widths[2])}  "
          "conf  records / reason")
    for r in rows:
        print(f"{r['layer'].ljust(widths[0])}  {r['kind'].ljust(widths[1])}  "
              f"{r['how'].ljust(widths[2])}  {r['confidence']:.2f}  "
              f"{', '.join(r['records'])} / {r['reason'] or r['source']}")
    return 0


def _inspect_zoo(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A zoo model's architecture (no weights needed): attention by type and by behaviour."""
    from attnviz.attention.detect import KIND_TITLES, detect_attention, parse_override
    from attnviz.errors import SettingsError
    from attnviz.loader import build_architecture, default_cam_layer
    from attnviz.zoo import DEFAULT_MODEL_ID, get_spec

    for flag in ("factory_kwargs", "labels", "input_size", "num_classes", "checkpoint"):
        if getattr(args, flag, None) is not None:
            raise SettingsError(f"--{flag.replace('_', '-')} applies only to --factory, "
                                "--torchscript or --timm")
    spec = get_spec(args.model or DEFAULT_MODEL_ID)
    model = build_architecture(spec).eval().requires_grad_(False)
    overrides = dict(parse_override(a) for a in args.attention)
    kwargs = {} if args.min_confidence is None else {"min_confidence": args.min_confidence}
    found = detect_attention(model, input_size=min(spec.preprocessing.size, 128),
                             overrides=overrides, behaviour=not args.no_detect, **kwargs)
    rows = [{"layer": f.layer, "kind": f.module_kind,
             "title": KIND_TITLES.get(f.module_kind, f.module_kind), "how": f.how,
             "source": f.source, "confidence": f.confidence, "reason": f.reason,
             "records": list(f.records)} for f in found]
    info = {"model": spec.id, "weights": "architecture only (weights not loaded)",
            "cam_layer": default_cam_layer(spec, model), "notes": []}
    return info, rows
