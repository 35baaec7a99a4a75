"""``python -m attnviz`` / ``attnviz``: the model zoo and batch analysis from a shell.

Errors a user can cause print one line on stderr and set the exit code; they never print a
traceback. Exit codes: 0 all good, 1 some inputs failed, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
ACCELERATOR_BATCH = 16  # images per forward pass of `analyze` on a GPU


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        self.exit(EXIT_USAGE, f"attnviz: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    from attnviz.cam import CAM_METHODS
    from attnviz.cli_custom import add_inspect_parser, add_source_arguments
    from attnviz.devices import DEVICE_CHOICES
    from attnviz.zoo import DEFAULT_MODEL_ID

    p = _Parser(prog="attnviz", description="See what attention modules inside CNNs attend to.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    m = sub.add_parser("models", help="list the model zoo and whether each works offline")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ly = sub.add_parser("layers", help="list a model's layers (for --cam-layer, --probe)")
    ly.add_argument("model", nargs="?", default=DEFAULT_MODEL_ID)

    a = sub.add_parser("analyze", help="write overlays, raw maps and a summary per image")
    a.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER")
    a.add_argument("--model", default=DEFAULT_MODEL_ID, help=f"zoo id (default {DEFAULT_MODEL_ID})")
    a.add_argument("--checkpoint", help="weights file (.safetensors, .pth, .pt) for the model")
    a.add_argument("--cam", action="append", metavar="METHOD",
                   help=f"CAM method, repeatable (default gradcam): {', '.join(CAM_METHODS)}")
    a.add_argument("--cam-layer", help="layer to take the CAM at (default: last stage)")
    a.add_argument("--target", help="class index or name for the CAM (default: top-1)")
    a.add_argument("--probe", action="append", metavar="LAYER",
                   help="observe SimAM energy at this layer (repeatable)")
    a.add_argument("--simam-lambda", type=float, default=1e-4)
    a.add_argument("--disable", action="append", default=[], metavar="LAYER",
                   help="run this attention layer as identity (ablation; repeatable)")
    a.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    a.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="images per forward pass (default: 1 on CPU, where larger batches "
                        f"measured no faster, {ACCELERATOR_BATCH} on a GPU)")
    a.add_argument("--colormap", default="jet")
    a.add_argument("--alpha", type=float, default=0.5, help="overlay opacity 0..1")
    a.add_argument("--out", required=True, type=Path, help="output folder")
    a.add_argument("--only", action="append", metavar="LAYER",
                   help="write only this attention layer's maps (repeatable)")
    add_source_arguments(a)

    d = sub.add_parser("download", help="fetch a model's online weights into their cache")
    d.add_argument("model")
    add_inspect_parser(sub)

    from attnviz.cli_training import add_evaluate_parser, add_fit_parser

    add_fit_parser(sub)
    add_evaluate_parser(sub)
    return p


def _cmd_models(args: argparse.Namespace) -> int:
    from attnviz.zoo import DEFAULT_MODEL_ID, list_specs

    rows = [s.listing() for s in list_specs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    cols = ["id", "backbone", "attention", "placement", "offline", "weights"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols))
    for r in rows:
        mark = " (default)" if r["id"] == DEFAULT_MODEL_ID else ""
        print("  ".join(r[c].ljust(widths.get(c, 0)) for c in cols[:-1]) + "  " + r["weights"]
              + mark)
    print("\noffline: offline = works now without network; cached = online weights already in "
          "their cache; download = needs network once; needs file = pass --checkpoint FILE")
    return EXIT_OK


def _cmd_layers(args: argparse.Namespace) -> int:
    from attnviz.attention.probe import find_attention
    from attnviz.loader import build_architecture, default_cam_layer
    from attnviz.zoo import get_spec

    spec = get_spec(args.model)
    model = build_architecture(spec)
    attention = {f.layer: f.module_kind for f in find_attention(model)}
    print(f"# {spec.id}: default CAM layer {default_cam_layer(spec, model)}")
    for name, module in model.named_modules():
        if name:
            tag = f"  [attention: {attention[name]}]" if name in attention else ""
            print(f"{name}  {type(module).__name__}{tag}")
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    from attnviz.zoo import get_spec

    spec = get_spec(args.model)
    spec.source.load()
    print(f"{spec.id}: weights ready ({spec.source.describe()})")
    return EXIT_OK


def _expand(inputs: Sequence[str]) -> Iterator[Path]:
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
            )
        else:
            yield path


def _cmd_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from attnviz.analysis import analyze_batch
    from attnviz.cam import throttled_progress
    from attnviz.cli_custom import load_from_args, shown_layers
    from attnviz.custom import select_records
    from attnviz.errors import AttnvizError
    from attnviz.export import safe_name, write_analysis
    from attnviz.inputs import load_image
    from attnviz.render import colormap_names

    if args.colormap not in colormap_names():
        from attnviz.errors import SettingsError, choices_message

        raise SettingsError(choices_message("colormap", args.colormap, colormap_names()))
    if not 0.0 <= args.alpha <= 1.0:
        from attnviz.errors import SettingsError

        raise SettingsError(f"--alpha must be between 0 and 1, got {args.alpha}")
    paths = list(_expand(args.inputs))
    if not paths:
        from attnviz.errors import SettingsError

        raise SettingsError("no input files found")
    model = load_from_args(args)  # the zoo's, or the user's own (--factory/--torchscript/--timm)
    shown = shown_layers(args, model)
    methods = args.cam or (["gradcam"] if model.cam_layer else [])
    batch = args.batch_size or (1 if model.device.type == "cpu" else ACCELERATOR_BATCH)
    failures = 0
    used: set[str] = set()
    bar = tqdm(total=len(paths), desc="analysing", unit="image", disable=None, file=sys.stderr)
    # ScoreCAM's masked passes, beside the image count.
    passes = throttled_progress(
        lambda done, total: bar.set_postfix_str(f"Score-CAM {done}/{total} passes"))
    for start in range(0, len(paths), batch):
        # Decode this batch (a bad file is reported and skipped), analyse it in one pass,
        # write it: memory stays flat in the number of images.
        decoded = []
        for path in paths[start:start + batch]:
            try:
                decoded.append((path, load_image(path)))
            except AttnvizError as exc:
                failures += 1
                bar.write(f"attnviz: {path}: {exc}", file=sys.stderr)
                bar.update(1)
        if not decoded:
            continue
        try:
            analyses = analyze_batch(
                [image.array for _, image in decoded], model, cam_methods=methods,
                target=args.target, cam_layer=args.cam_layer, disabled=args.disable,
                probe_layers=args.probe, simam_lambda=args.simam_lambda,
                progress=passes,
            )
        except AttnvizError as exc:
            if _is_setting_error(exc):
                bar.write(f"attnviz: {exc}", file=sys.stderr)
                return EXIT_USAGE  # the same setting would fail for every image
            failures += len(decoded)
            bar.write(f"attnviz: {', '.join(str(p) for p, _ in decoded)}: {exc}",
                      file=sys.stderr)
            bar.update(len(decoded))
            continue
        for (path, image), analysis in zip(decoded, analyses):
            stem = safe_name(path.stem)
            name, n = stem, 1
            while name in used:
                n += 1
                name = f"{stem}_{n}"
            used.add(name)
            write_analysis(select_records(analysis, shown), args.out / name, cmap=args.colormap,
                           alpha=args.alpha,
                           extra={"input": str(path), "input_notes": list(image.notes)})
            bar.update(1)
    bar.close()
    done = len(paths) - failures
    print(f"{done} of {len(paths)} image(s) analysed with {model.id}; results in {args.out}",
          file=sys.stderr)
    return EXIT_OK if failures == 0 else EXIT_SOME_FAILED


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _is_setting_error(exc: Exception) -> bool:
    from attnviz.errors import SettingsError

    return isinstance(exc, SettingsError)


def main(argv: Sequence[str] | None = None) -> int:
    from attnviz.cli_custom import cmd_inspect
    from attnviz.cli_training import cmd_evaluate, cmd_fit
    from attnviz.errors import AttnvizError, SettingsError
    from attnviz.memory import keep_freed_memory

    args = _parser().parse_args(argv)
    keep_freed_memory()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in model cards
    handlers = {"models": _cmd_models, "layers": _cmd_layers, "analyze": _cmd_analyze,
                "download": _cmd_download, "fit": cmd_fit, "evaluate": cmd_evaluate,
                "inspect": cmd_inspect}
    try:
        return handlers[args.command](args)
    except SettingsError as exc:
        print(f"attnviz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AttnvizError as exc:
        print(f"attnviz: error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except BrokenPipeError:  # e.g. `attnviz models | head`
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
