"""`ganmoco convert OLD NEW`: bring a model folder saved by an older ganmoco to the current layout, once, so that
`GanMocoPipeline.from_pretrained` loads only the current one.

Known older layouts:
- generator weights without `upscaler.*` (saved before the upscaling head existed) under a config that asks for
  one: the converted config says `upscale_scales: []`, a model without an upscaling head (style transfer and fusion
  unchanged; `--init_from OLD` in train/train.py trains a fresh head).
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path


class ConvertError(ValueError):
    """A folder that cannot be converted; the message says why in one line."""


def _generator_keys(folder: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    keys = []
    for path in sorted((folder / "generator").glob("*.safetensors")):
        try:
            with safe_open(path, "np") as weights:
                keys += list(weights.keys())
        except (SafetensorError, OSError) as err:
            raise ConvertError(f"{path} is not a readable safetensors file: {str(err).splitlines()[0]}") from None
    return keys


def _generator_config(folder: Path) -> dict:
    path = folder / "generator" / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConvertError(f"cannot read {path}: {err}") from None


def _default_upscale_scales() -> list[int]:
    from .models.generator import GanMocoGenerator

    return list(inspect.signature(GanMocoGenerator.__init__).parameters["upscale_scales"].default)


def outdated(folder: str | Path) -> list[str]:
    """What in `folder` is an older layout (empty: current). Reads configs and weight names only."""
    folder = Path(folder)
    for required in ("model_index.json", "generator/config.json", "style_encoder/config.json"):
        if not (folder / required).is_file():
            raise ConvertError(f"{folder / required} is missing: not a ganmoco pipeline folder")
    for component in ("generator", "style_encoder"):
        if not any((folder / component).glob("*.safetensors")):
            raise ConvertError(f"no .safetensors weights in {folder / component} (pickle files are not loaded)")
    config = _generator_config(folder)
    keys = _generator_keys(folder)
    if not keys:
        raise ConvertError(f"{folder / 'generator'} holds no weights")
    found = []
    if config.get("upscale_scales", _default_upscale_scales()) and not any(k.startswith("upscaler.") for k in keys):
        found.append("saved before the upscaling head existed")
    return found


def convert(src: str | Path, dst: str | Path) -> list[str]:
    """Write the current-layout copy of `src` into the new folder `dst`; what was changed. `src` is not touched."""
    src, dst = Path(src), Path(dst)
    changes = outdated(src)
    if not changes:
        raise ConvertError(f"{src} is already in the current layout: nothing to convert")
    if dst.is_file() or (dst.is_dir() and any(dst.iterdir())):
        raise ConvertError(f"{dst} exists and is not empty: give a new folder")
    if not dst.parent.is_dir():
        raise ConvertError(f"the folder {str(dst.parent)!r} does not exist")
    tmp = dst.with_name(dst.name + ".converting")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    config = _generator_config(tmp)
    if "saved before the upscaling head existed" in changes:
        config["upscale_scales"] = []
    (tmp / "generator" / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if dst.is_dir():
        dst.rmdir()
    tmp.rename(dst)
    return changes
