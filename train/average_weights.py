"""A weight-space blend of two pipelines from one lineage: every weight = base + t (tuned - base).

    python train/average_weights.py --base BEFORE/ --tuned AFTER/ --weight 0.7 --out BLEND/

`tuned` must be a fine-tune of `base` (same configs, same parameter names). A fine-tune trades one quality for
another (the temporal term steadies video but moves the stills' colours); the blend keeps most of the gain at a
fraction of the cost, with no extra run time (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models",
WiSE-FT). The output folder is `tuned` with the blended weights, in fp32, loadable with
`GanMocoPipeline.from_pretrained` and shippable with train/ship_model.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

WEIGHTS = "diffusion_pytorch_model.safetensors"


def blend(base: dict, tuned: dict, t: float) -> dict:
    """base + t (tuned - base) for floating tensors (in fp32); other tensors (counters) are the tuned ones."""
    if base.keys() != tuned.keys():
        raise SystemExit(f"error: the two models' parameters differ: {sorted(base.keys() ^ tuned.keys())[:5]}")
    out = {}
    for name, value in tuned.items():
        if value.is_floating_point():
            a, b = base[name].float(), value.float()
            if a.shape != b.shape:
                raise SystemExit(f"error: {name} has shape {tuple(a.shape)} in --base and {tuple(b.shape)} in --tuned")
            out[name] = a + t * (b - a)
        else:
            out[name] = value
    return out


def _architecture(folder: Path) -> dict:
    """A component's config without the bookkeeping keys (`_name_or_path`, `_diffusers_version`)."""
    return {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if not k.startswith("_")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the pipeline folder before the fine-tune")
    p.add_argument("--tuned", required=True, help="the fine-tuned pipeline folder")
    p.add_argument("--weight", type=float, required=True, help="t: 0 gives --base, 1 gives --tuned")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not 0.0 <= args.weight <= 1.0:
        raise SystemExit(f"error: --weight must be in [0, 1], got {args.weight}")
    base, tuned, out = Path(args.base), Path(args.tuned), Path(args.out)
    components = [c for c in json.loads((tuned / "model_index.json").read_text()) if not c.startswith("_")]
    for component in components:
        for folder in (base, tuned):
            if not (folder / component / WEIGHTS).is_file():
                raise SystemExit(f"error: {folder / component / WEIGHTS} is missing")
        if _architecture(base / component) != _architecture(tuned / component):
            raise SystemExit(f"error: the {component} configs of --base and --tuned differ")
    # every blend first: a parameter that does not match stops the script before anything is written
    mixed = {c: blend(load_file(base / c / WEIGHTS), load_file(tuned / c / WEIGHTS), args.weight) for c in components}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(tuned, out)
    for component, weights in mixed.items():
        save_file(weights, out / component / WEIGHTS, metadata={"format": "pt"})
    (out / "weight_blend.json").write_text(
        json.dumps({"base": str(base), "tuned": str(tuned), "weight": args.weight}, indent=2) + "\n"
    )
    print(f"{out}: {args.weight} x {tuned} + {1 - args.weight:g} x {base}")


if __name__ == "__main__":
    main()
