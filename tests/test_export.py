import numpy as np
import pytest
import torch

from ganmoco import GanMocoPipeline
from ganmoco.images import load_image
from ganmoco.pixels import to_tensor

from .conftest import assert_one_error_line, run_cli

ort = pytest.importorskip("onnxruntime")


def test_export_onnx_matches_torch_at_several_sizes(tiny_pipeline_dir, examples, tmp_path):
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    with torch.no_grad():  # untrained modulations start at zero; perturb so that the style code matters
        for p in pipe.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "generator.onnx"
    r = run_cli("export-onnx", "--model", str(tmp_path / "model"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    code = pipe.style_code(examples / "van_gogh_starry_night.jpg")
    for name, size in (("bird_owl.jpg", None), ("castle_chambord.jpg", (123, 77)), ("bird_duck.jpg", (16, 300))):
        image = load_image(examples / name)
        x = to_tensor(image if size is None else image.resize(size))
        with torch.no_grad():
            expected = pipe.generator(x, code).numpy()
        got = session.run(None, {"content": x.numpy(), "code": code.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4


def test_export_onnx_bad_output_name(tiny_pipeline_dir, tmp_path):
    r = run_cli("export-onnx", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "model.txt"))
    assert_one_error_line(r)
    for extra in (
        ["--code-out", str(tmp_path / "c.npy")],
        ["--style", "x.jpg"],
        ["--code-out", "c.txt", "--style", "x"],
    ):
        r = run_cli("export-onnx", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "g.onnx"), *extra)
        assert_one_error_line(r)
        assert not (tmp_path / "g.onnx").exists()


def test_export_onnx_writes_the_style_code_it_takes(tiny_pipeline_dir, examples, tmp_path):
    """The CLI writes the graph and the blended code of two styles; the graph run on that code is the
    pipeline's stylization at strength 1."""
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    with torch.no_grad():
        for p in pipe.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pipe.save_pretrained(tmp_path / "model")
    styles = [examples / "van_gogh_starry_night.jpg", examples / "van_gogh_bridge.jpg"]
    r = run_cli(
        "export-onnx", "--model", tmp_path / "model", "--out", tmp_path / "g.onnx", "--code-out", tmp_path / "c.npy",
        "--style", styles[0], "--style", styles[1], "--weights", "0.7", "0.3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    code = np.load(tmp_path / "c.npy")
    pipe = GanMocoPipeline.from_pretrained(tmp_path / "model")
    assert code.dtype == np.float32 and code.shape == (1, pipe.generator.style_code_dim)
    assert np.allclose(code, pipe.blend_codes(styles, [0.7, 0.3]).numpy(), atol=1e-6)
    photo = load_image(examples / "bird_owl.jpg")
    x = np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 127.5 - 1  # as the module docstring says
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    image = session.run(None, {"content": x, "code": code})[0]
    expected = np.asarray(pipe.stylize(photo, styles, weights=[0.7, 0.3]), np.float32)
    got = ((image[0].transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).round()
    assert np.abs(got - expected).max() <= 1


def test_export_onnx_with_colour_matching(examples, tmp_path):
    from ganmoco import GanMocoGenerator
    from ganmoco.export import export_onnx

    G = GanMocoGenerator(base_channels=8, max_channels=16, num_res_blocks=1, code_dim=16, match_colors=True)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        code = G.eval().style_code(torch.randn(1, 16) * 0.1, to_tensor(load_image(examples / "van_gogh_bridge.jpg")))
        x = to_tensor(load_image(examples / "bird_owl.jpg").resize((123, 77)))
        expected = G(x, code).numpy()
    session = ort.InferenceSession(str(export_onnx(G, tmp_path / "g.onnx")), providers=["CPUExecutionProvider"])
    got = session.run(None, {"content": x.numpy(), "code": code.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
