"""Analysis cost against its physical limit (a bare forward) and against pytorch_grad_cam.

For each model: a bare inference forward (``torch.inference_mode``, preprocessed tensor), a
plain prediction from the decoded photo (preprocessing + that forward), the full attnviz
analysis from the decoded photo (preprocessing, every attention record, Grad-CAM at the last
stage for the top-1 class, top-5), and ``pytorch_grad_cam.GradCAM`` alone on the same tensor
and target. The analysis is compared with both: the bare forward is the strict reading of the
target (the analysis pays for preprocessing, the forward does not), the plain prediction
starts from the same input as the analysis. Timings are medians of calls taken in turns;
ratios are medians of the per-round ratios (``common.paired_ratio``), which cancel this VM's
speed drift.
``pytorch_grad_cam.GradCAM`` runs as its README uses it: on the model with parameters that
require gradients. Each comparison is interleaved as a pair in one run.
Targets (issue 6): analysis <= 1.25x bare forward; analysis >= 2.5x faster than GradCAM.
Runs with ``attnviz.keep_freed_memory`` as the app and the CLI do; ``--glibc-default`` without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    ROOT,
    interleaved_samples,
    machine,
    paired_quartiles,
    paired_ratio,
    save,
)


def _models(device: str):
    from attnviz import load_model
    from attnviz.checkpoints import save_safetensors
    from attnviz.loader import build_architecture
    from attnviz.zoo import get_spec

    out = {"efficientnet_lite0-simam-probe (default)": load_model(device=device)}
    tmp = ROOT / "benchmarks" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for model_id in ("resnet50-cbam", "resnet50-simam"):
        # Cost does not depend on weight values: random weights stand in for the published ones.
        path = tmp / f"{model_id}.safetensors"
        if not path.exists():
            torch.manual_seed(0)
            save_safetensors(build_architecture(get_spec(model_id)).state_dict(), path)
        out[model_id] = load_model(model_id, checkpoint=path, device=device)
    return out


def run(device: str, reps: int, with_scorecam: bool = False) -> dict:
    import copy

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from attnviz import analyze
    from attnviz.cam import scorecam_batch
    from attnviz.inputs import load_image

    image = load_image(ROOT / "assets" / "samples" / "chelsea.jpg").array
    rows = []
    for name, loaded in _models(device).items():
        model, dev = loaded.model, loaded.device
        x = loaded.preprocessing.to_tensor([image]).to(dev)
        target = analyze(image, loaded).target

        def bare(model=model, x=x):
            with torch.inference_mode():
                return model(x)

        def bare_from_photo(model=model, prep=loaded.preprocessing, dev=dev):
            # A plain prediction from the same decoded photo the analysis starts from.
            with torch.inference_mode():
                return model(prep.to_tensor([image]).to(dev))

        # The usual tool as its README uses it: a model whose parameters require gradients
        # (same weights, a copy so the shared model stays as attnviz loads it).
        usual = copy.deepcopy(model).requires_grad_(True)
        ref = GradCAM(usual, [dict(usual.named_modules())[loaded.cam_layer]])
        targets = [ClassifierOutputTarget(target)]

        def full(loaded=loaded):
            return analyze(image, loaded)

        def usual_cam(ref=ref, x=x, targets=targets):
            return ref(x, targets)

        # Each comparison is its own interleaved pair, so one contender's memory churn
        # does not slow the other's measurements.
        bare_s = interleaved_samples(
            {"bare_forward": bare, "bare_from_photo": bare_from_photo, "attnviz_analysis": full},
            reps=reps, device=dev)
        usual_s = interleaved_samples(
            {"attnviz_analysis": full, "pytorch_grad_cam_GradCAM": usual_cam},
            reps=reps, device=dev)
        vs_bare = {k: statistics.median(v) for k, v in bare_s.items()}
        vs_usual = {k: statistics.median(v) for k, v in usual_s.items()}
        ref.activations_and_grads.release()
        a = analyze(image, loaded)
        scorecam = None
        if with_scorecam and name.endswith("(default)"):
            # ScoreCAM runs one forward pass per channel of the CAM layer, batched by 32: its
            # own cost, timed for the default model only (ResNet-50's 2048 take minutes).
            seen: dict[str, int] = {}

            def count(_m, _i, out, seen=seen) -> None:  # returns None: output unchanged
                seen.setdefault("channels", int(out.shape[1]))

            hook = dict(model.named_modules())[loaded.cam_layer].register_forward_hook(count)
            b = analyze(image, loaded, cam_methods=("scorecam",))
            hook.remove()
            scorecam = {"seconds": round(b.timings["cam:scorecam"], 2),
                        "forward_passes": seen["channels"], "batch": scorecam_batch(dev)}
        print(f"{name}: {vs_bare} {vs_usual}", file=sys.stderr, flush=True)
        rows.append({
            "model": name,
            "device": str(dev),
            "records": len(a.records),
            "bare_forward_ms": round(vs_bare["bare_forward"] * 1000, 1),
            "attnviz_analysis_ms": round(vs_bare["attnviz_analysis"] * 1000, 1),
            "analysis_over_bare": round(
                paired_ratio(bare_s["attnviz_analysis"], bare_s["bare_forward"]), 3),
            "analysis_over_bare_quartiles": [round(q, 3) for q in paired_quartiles(
                bare_s["attnviz_analysis"], bare_s["bare_forward"])],
            "bare_from_photo_ms": round(vs_bare["bare_from_photo"] * 1000, 1),
            "analysis_over_bare_from_photo": round(
                paired_ratio(bare_s["attnviz_analysis"], bare_s["bare_from_photo"]), 3),
            "analysis_over_bare_from_photo_quartiles": [round(q, 3) for q in paired_quartiles(
                bare_s["attnviz_analysis"], bare_s["bare_from_photo"])],
            "pytorch_grad_cam_GradCAM_ms": round(vs_usual["pytorch_grad_cam_GradCAM"] * 1000, 1),
            "gradcam_over_analysis": round(paired_ratio(
                usual_s["pytorch_grad_cam_GradCAM"], usual_s["attnviz_analysis"]), 2),
            "scorecam": scorecam,
        })
    return {"machine": machine(), "reps": reps, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--scorecam", action="store_true", help="also time ScoreCAM (slow on CPU)")
    p.add_argument("--glibc-default", action="store_true",
                   help="leave malloc as it is (the app and the CLI call keep_freed_memory)")
    args = p.parse_args()
    allocator = "glibc default"
    if not args.glibc_default:
        from attnviz.memory import keep_freed_memory

        allocator = "keep_freed_memory" if keep_freed_memory() else "default (no mallopt)"
    result = {**run(args.device, args.reps, args.scorecam), "allocator": allocator}
    path = save(f"analysis-{args.device}" + ("-glibc-default" if args.glibc_default else ""),
                result)
    print(f"# machine: {result['machine']}; allocator: {allocator}")
    for r in result["rows"]:
        print(r)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
