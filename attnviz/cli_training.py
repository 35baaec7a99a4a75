"""The ``fit`` and ``evaluate`` subcommands: their options and handlers.

Kept apart from ``attnviz.cli`` so the CLI module only wires them in; the work itself lives in
``attnviz.training`` and ``attnviz.evaluate``. Same contract as the rest of the CLI: a user's
mistake is one line on stderr and exit code 2; a failed model or file is exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
DEFAULT_EVAL_CAMS = ("gradcam", "gradcam++", "layercam", "eigencam")


def add_fit_parser(sub: argparse._SubParsersAction) -> None:
    from attnviz.devices import DEVICE_CHOICES

    f = sub.add_parser(
        "fit", help="train or fine-tune a backbone + attention module (writes weights + card)",
        description="Train a zoo model with its attention module in place, on the procedural "
                    "shapes or on a folder with one subfolder per class. Writes "
                    "OUT/<id>.safetensors and the model card OUT/<id>.json.",
    )
    f.add_argument("--model", required=True,
                   help="zoo id (e.g. resnet18-cbam) or procedural-resnet-<attention> "
                        "(baseline, se, cbam, cam, sam, simam, bam, nonlocal, stn, sssa)")
    f.add_argument("--data", default="procedural",
                   help="'procedural' (default) or a folder with one subfolder per class "
                        "(or train/ and val/ folders of those)")
    budget = f.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps (procedural default 2000)")
    budget.add_argument("--epochs", type=float,
                        help="passes over the data (procedural: 10,000 images each; "
                             "folder default 10)")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    f.add_argument("--weight-decay", type=float, default=5e-4)
    f.add_argument("--seed", type=int, default=0, help="seeds weights, data stream and split")
    f.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    f.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a "
                        "busy machine)")
    f.add_argument("--size", type=int, help="input size in pixels (default: the model's own)")
    f.add_argument("--name", help="id of the fitted model (default from model and data)")
    f.add_argument("--heldout", type=int, default=5000, metavar="N",
                   help="held-out procedural images scored at the end (default 5000)")
    f.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of each class held out of a folder without val/ (default 0.2)")
    f.add_argument("--resume", type=Path, metavar="STATE",
                   help="continue an interrupted run from its OUT/<id>.state.pt")
    f.add_argument("--save-every", type=int, default=200, metavar="STEPS",
                   help="write the training state every so many steps (0: only on Ctrl-C)")
    f.add_argument("--keep-state", action="store_true",
                   help="keep the training state after finishing (to train on later)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--out", required=True, type=Path, help="output folder")


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    from attnviz.cam import CAM_METHODS
    from attnviz.devices import DEVICE_CHOICES

    e = sub.add_parser(
        "evaluate", help="score how well attention maps and CAMs localise the object",
        description="For each model: accuracy, and for each spatial attention map and CAM "
                    "method the pointing game, mass in mask and AUC against ground-truth "
                    "masks. Writes OUT/localization.csv and OUT/localization.md.",
    )
    e.add_argument("--models", default="all",
                   help="'all' (the bundled models) or comma-separated zoo ids / model cards")
    e.add_argument("--data", default="procedural",
                   help="'procedural' (default) or a class-per-subfolder folder with --masks")
    e.add_argument("--masks", type=Path,
                   help="folder of masks mirroring --data (same relative paths, any image type)")
    e.add_argument("--samples", type=int, default=500, help="procedural images (default 500)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--split", default="test", help="procedural stream (default test)")
    e.add_argument("--cam", action="append", metavar="METHOD",
                   help=f"CAM method, repeatable (default {', '.join(DEFAULT_EVAL_CAMS)}): "
                        f"{', '.join(CAM_METHODS)}")
    e.add_argument("--checkpoint", help="weights file for a single --models entry")
    e.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    e.add_argument("--threads", type=int, help="CPU threads for torch")
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--out", required=True, type=Path, help="output folder")


def _threads(n: int | None) -> None:
    if n is None:
        return
    from attnviz.errors import SettingsError

    if n < 1:
        raise SettingsError(f"--threads must be at least 1, got {n}")
    import torch

    torch.set_num_threads(n)


def cmd_fit(args: argparse.Namespace) -> int:
    from attnviz.training.fit import FitConfig, current_command, fit

    _threads(args.threads)
    config = FitConfig(
        model=args.model, out=args.out, data=args.data, steps=args.steps, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        device=args.device, size=args.size, name=args.name, heldout_samples=args.heldout,
        heldout_fraction=args.heldout_fraction, resume=args.resume, save_every=args.save_every,
        keep_state=args.keep_state, progress=not args.no_progress,
        command=current_command(args.argv),
    )
    result = fit(config)
    training = result.card["training"]
    print(f"{result.card['id']}: held-out accuracy {result.accuracy:.2%} on "
          f"{result.card['heldout']['samples']} images after {training['steps']} steps "
          f"({training['seconds']:.0f} s on {training['device']}); wrote {result.weights} and "
          f"{result.card_path}", file=sys.stderr)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from attnviz.evaluate import EvaluationConfig, run_evaluation
    from attnviz.training.fit import current_command

    _threads(args.threads)
    config = EvaluationConfig(
        models=args.models, data=args.data, masks=args.masks, samples=args.samples,
        seed=args.seed, split=args.split, cam_methods=tuple(args.cam or DEFAULT_EVAL_CAMS),
        checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size,
        out=args.out, command=current_command(args.argv), progress=True,
    )
    report = run_evaluation(config)
    print(f"{len(report.models)} model(s) evaluated on {report.samples} images; wrote "
          f"{report.csv_path} and {report.markdown_path}", file=sys.stderr)
    return EXIT_OK if not report.failures else 1
