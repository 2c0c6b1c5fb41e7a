"""Super-resolution: the generator's upscaling head through the pipeline, the CLI, the evaluator and training."""

import io
import json
import re
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganmoco import GanMocoGenerator, GanMocoPipeline, StyleEncoder, degrade
from ganmoco.baselines import RRDN
from ganmoco.metrics import upscale_metrics
from ganmoco.models.pretrained import convert_tfjs_rrdn
from ganmoco.pixels import to_pil, to_tensor

from .conftest import TINY_GENERATOR, TINY_STYLE_ENCODER, assert_one_error_line, image_diff, run_cli


@pytest.fixture(scope="module")
def pipe():
    """A tiny pipeline whose upscaling tails are not zero (a fresh head is exactly bicubic)."""
    torch.manual_seed(0)
    generator = GanMocoGenerator(**TINY_GENERATOR)
    with torch.no_grad():
        for tail in generator.upscaler.tails.values():
            tail.weight.normal_(std=0.05)
    return GanMocoPipeline(generator.eval(), StyleEncoder(**TINY_STYLE_ENCODER).eval())


@pytest.mark.parametrize("size", [(1, 1), (37, 23), (8, 200)])
@pytest.mark.parametrize("scale", [2, 4])
def test_output_is_exactly_scale_times_the_input(pipe, size, scale):
    image = Image.new("RGB", size, (200, 30, 90))
    assert pipe.upscale(image, scale=scale).size == (size[0] * scale, size[1] * scale)


def test_a_fresh_head_is_exactly_bicubic(examples):
    photo = Image.open(examples / "bird_owl.jpg").convert("RGB").crop((0, 0, 96, 64))
    x = torch.from_numpy(np.asarray(photo, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    fresh = GanMocoGenerator(**TINY_GENERATOR).eval()
    with torch.no_grad():
        out = fresh.upscale(x, 4)
    assert torch.allclose(out, F.interpolate(x, scale_factor=4, mode="bicubic"), atol=1e-5)


def test_tiled_equals_untiled(pipe, examples):
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB")  # 448 x 336: several 128-px tiles
    whole = np.asarray(pipe.upscale(photo, scale=2, tile=False), np.int16)
    tiled = np.asarray(pipe.upscale(photo, scale=2, tile=128), np.int16)
    assert np.abs(whole - tiled).max() <= 1


def test_the_denoise_strength_of_a_head_that_has_it(pipe, examples, tmp_path):
    """upscale_denoise: the strength shifts the head (0, the default, is the plain head bit for bit),
    per image in a list and in tiles alike; a head without it takes 0 only; bad strengths are one-line errors."""
    torch.manual_seed(1)
    generator = GanMocoGenerator(**TINY_GENERATOR, upscale_denoise=True)
    generator.load_state_dict(pipe.generator.state_dict(), strict=False)
    with torch.no_grad():
        generator.upscaler.denoise.normal_(std=0.5)
    both = GanMocoPipeline(generator.eval(), pipe.style_encoder)
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB")
    plain = np.asarray(pipe.upscale(photo, scale=2), np.int16)
    assert np.array_equal(np.asarray(both.upscale(photo, scale=2, denoise=0), np.int16), plain)
    assert np.array_equal(np.asarray(both.upscale(photo, scale=2), np.int16), plain)  # 0 is the default
    cleaned = np.asarray(both.upscale(photo, scale=2, denoise=1.0), np.int16)
    assert np.abs(cleaned - plain).mean() > 0.5
    half = np.asarray(both.upscale(photo, scale=2, denoise=0.5), np.int16)
    assert np.abs(half - plain).mean() < np.abs(cleaned - plain).mean()
    assert np.abs(np.asarray(both.upscale(photo, scale=2, tile=128, denoise=1), np.int16) - cleaned).max() <= 1
    assert np.array_equal(np.asarray(both.upscale([photo, photo], scale=2, denoise=0)[1], np.int16), plain)
    for bad in (-0.1, 1.5, "1", True, float("nan")):
        with pytest.raises(ValueError, match="denoise must be a number from 0 to 1"):
            both.upscale(photo, scale=2, denoise=bad)
    with pytest.raises(ValueError, match="has no denoise strength"):
        pipe.upscale(photo, scale=2, denoise=1)
    # saved and loaded, the option and its weights come along
    both.save_pretrained(tmp_path / "m")
    again = GanMocoPipeline.from_pretrained(tmp_path / "m")
    assert np.array_equal(np.asarray(again.upscale(photo, scale=2, denoise=1), np.int16), cleaned)
    out = tmp_path / "o.png"
    r = run_cli("upscale", examples / "bird_owl.jpg", "--denoise", "2", "--model", tmp_path / "m", "--out", out)
    assert_one_error_line(r)
    assert "--denoise" in r.stderr and not out.exists()


@pytest.mark.parametrize("scale", [3, 0, -2, 2.5, "4", True, None])
def test_bad_scales_are_one_line_errors(pipe, scale):
    with pytest.raises(ValueError, match="scale must be 2 or 4") as err:
        pipe.upscale(Image.new("RGB", (16, 16)), scale=scale)
    assert "\n" not in str(err.value)


def test_too_large_an_output_is_refused_before_any_work(pipe):
    with pytest.raises(ValueError, match="MP limit"):
        pipe.upscale(Image.new("RGB", (5000, 5000)), scale=4)


def test_bundled_model_beats_bicubic(examples):
    """The shipped head on a photo it never saw: x2 and x4 above bicubic on Y (the evaluator measures more)."""
    pipe = GanMocoPipeline.from_pretrained()
    high = Image.open(examples / "castle_neuschwanstein.jpg").convert("RGB")
    high = high.crop((0, 0, high.width // 4 * 4, high.height // 4 * 4))
    for scale, margin in ((2, 0.5), (4, 0.3)):
        low = high.resize((high.width // scale, high.height // scale), Image.BICUBIC)
        ours = upscale_metrics(pipe.upscale(low, scale=scale), high)["PSNR_Y"]
        bicubic = upscale_metrics(low.resize(high.size, Image.BICUBIC), high)["PSNR_Y"]
        assert ours > bicubic + margin, (scale, ours, bicubic)


def test_cli_upscale_and_its_errors(tiny_pipeline_dir, examples, tmp_path):
    out = tmp_path / "big.png"
    r = run_cli("upscale", examples / "bird_owl.jpg", "--scale", "4", "--model", tiny_pipeline_dir, "--out", out)
    assert r.returncode == 0, r.stderr
    w, h = Image.open(examples / "bird_owl.jpg").size
    assert Image.open(out).size == (4 * w, 4 * h)
    bad = tmp_path / "bad.png"
    r = run_cli("upscale", examples / "bird_owl.jpg", "--scale", "3", "--model", tiny_pipeline_dir, "--out", bad)
    assert_one_error_line(r)
    assert "--scale" in r.stderr and not bad.exists()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    r = run_cli("upscale", broken, "--model", tiny_pipeline_dir, "--out", bad)
    assert_one_error_line(r)
    assert "broken.jpg" in r.stderr and not bad.exists()


def test_eval_upscale_section(tmp_path, examples, tiny_pipeline_dir):
    out = tmp_path / "eval"
    r = run_cli(
        "eval", "--model", str(tiny_pipeline_dir), "--no-style", "--no-fusion", "--upscale",
        "--no-upscale-reference", "--upscale-size", "128", "--contents", str(examples / "bird_owl.jpg"),
        "--upscale-tracks", "clean", "area+jpeg70", "--upscale-real", str(examples / "bird_duck.jpg"),
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "metrics.json").read_text())["upscale"]
    assert set(report) == {"x2", "x4", "x2 area+jpeg70", "x4 area+jpeg70"}
    for scale in report.values():
        assert set(scale) == {"ganmoco", "bicubic", "lanczos"}
        # an untrained head is bicubic up to torch's and PIL's kernels; every method is far above noise
        assert abs(scale["ganmoco"]["PSNR_Y"] - scale["bicubic"]["PSNR_Y"]) < 1.5
        assert all(m["PSNR_Y"] > 20 and 0 < m["SSIM_Y"] <= 1 and m["VGG_dist"] > 0 for m in scale.values())
    assert report["x2"]["bicubic"]["PSNR_Y"] > report["x4"]["bicubic"]["PSNR_Y"]
    # JPEG loses more than a clean downscale does
    assert report["x4 area+jpeg70"]["bicubic"]["PSNR_Y"] < report["x4"]["bicubic"]["PSNR_Y"]
    assert Image.open(out / "grid_upscale.png").width == 4 * 320
    assert Image.open(out / "grid_upscale_degraded.png").size == (5 * 256, 276)  # input, 3 methods, original
    assert "| upscale x4 area+jpeg70 |" in (out / "metrics.md").read_text()
    assert Image.open(out / "grid_upscale_real.png").size == (2 * 384, 404)  # bicubic and ganmoco, x4 of 96 px
    r = run_cli("eval", "--no-style", "--no-fusion", "--upscale", "--upscale-tracks", "fog", "--contents",
                str(examples / "bird_owl.jpg"), "--out", str(out))  # fmt: skip
    assert_one_error_line(r)
    assert "unknown --upscale-tracks fog" in r.stderr


def _tfjs_tarball(net: RRDN, folder: str) -> bytes:
    """A TF.js layers package holding `net`'s weights as Keras stores them (HWIO, depth_to_space order)."""
    s = net.scale
    entries, blobs = [], []
    for name, conv in net.convs.items():
        kernel = conv.weight.detach().permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
        bias = conv.bias.detach().numpy()
        if name == "PreShuffle":  # torch channel c*s*s + k -> tf channel k*3 + c
            order = np.arange(3 * s * s).reshape(3, s * s).T.reshape(-1)
            kernel, bias = kernel[..., order], bias[order]
        for suffix, array in (("kernel", kernel), ("bias", bias)):
            entries.append({"name": f"{name}/{suffix}", "shape": list(array.shape), "dtype": "float32"})
            blobs.append(np.ascontiguousarray(array, "<f4").tobytes())
    layers = [{"class_name": f"PixelShuffle{s}x", "config": {"scale": s}}]
    manifest = {
        "modelTopology": {"model_config": {"config": {"layers": layers}}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": entries}],
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("model.json", json.dumps(manifest).encode()), ("group1-shard1of1.bin", b"".join(blobs))):
            info = tarfile.TarInfo(folder + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tfjs_rrdn_conversion_round_trips_and_matches_depth_to_space():
    torch.manual_seed(0)
    net = RRDN(scale=2, blocks=1, dense=1, convs=2, growth=4, width=8).eval()
    converted = RRDN(scale=2, blocks=1, dense=1, convs=2, growth=4, width=8).eval()
    converted.load_state_dict(convert_tfjs_rrdn(_tfjs_tarball(net, "package/models/x2/"), "package/models/x2/"))
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(net(x), converted(x), atol=1e-6)
        # the PreShuffle channels really are reordered: TF's depth_to_space on the Keras-ordered output
        # equals torch's pixel_shuffle on ours
        h = converted.convs["PreShuffle"](torch.rand(1, 8, 5, 5))
        tf_order = h[:, np.arange(12).reshape(3, 4).T.reshape(-1)]  # (row, col, colour) like Keras
        nhwc = tf_order.permute(0, 2, 3, 1).reshape(1, 5, 5, 2, 2, 3).permute(0, 1, 3, 2, 4, 5).reshape(1, 10, 10, 3)
        assert torch.allclose(nhwc.permute(0, 3, 1, 2), F.pixel_shuffle(h, 2))


def test_training_pairs_are_degraded_low_res_copies_of_the_photo(examples):
    from ganmoco.data import UpscaleDataset

    dataset = UpscaleDataset([examples / "castle_chambord.jpg"], 96, seed=0)
    low2, high2, low4, high4, levels = dataset[(0, 0)]
    assert low2.shape == low4.shape == (3, 24, 24) and high2.shape == (3, 48, 48) and high4.shape == (3, 96, 96)
    assert all(torch.equal(a, b) for a, b in zip(dataset[(0, 0)], (low2, high2, low4, high4, levels), strict=True))
    # strength 0 marks a clean downscale, 1 a degraded one; over items both come up
    drawn = torch.stack([dataset[(epoch, 0)][4] for epoch in range(12)])
    assert set(drawn.flatten().tolist()) == {0.0, 1.0}
    # each low-res input is the photo made small (degraded: near its plain downscale, not far), and never
    # identical to another epoch's (new crops, new degradations)
    plain = F.interpolate(high4[None], scale_factor=0.25, mode="bicubic", antialias=True)[0]
    assert (low4 - plain).abs().mean() < 0.15
    assert not torch.equal(dataset[(1, 0)][2], low4)
    with pytest.raises(ValueError, match="divisible by 4"):
        UpscaleDataset([examples / "castle_chambord.jpg"], 90, seed=0)


def test_training_pairs_of_one_fixed_degradation_track(examples):
    """`track`: every input is made small by that one evaluator track, strength 0 for the clean tracks."""
    from ganmoco.data import UpscaleDataset

    photos = [examples / "castle_chambord.jpg"]
    low2, high2, low4, high4, levels = UpscaleDataset(photos, 96, seed=0, track="clean")[(0, 0)]
    assert levels.tolist() == [0.0, 0.0]
    for low, high, scale in ((low2, high2, 2), (low4, high4, 4)):
        assert torch.equal(low, to_tensor(degrade.degrade(to_pil(high[None]), scale, "clean"))[0])
    items = [UpscaleDataset(photos, 96, seed=0, track="area+jpeg70")[(epoch, 0)] for epoch in range(3)]
    for low2, high2, low4, high4, levels in items:
        assert levels.tolist() == [1.0, 1.0]
        # the track's own JPEG: the same small image as the evaluator makes of this crop
        for low, high, scale in ((low2, high2, 2), (low4, high4, 4)):
            assert torch.equal(low, to_tensor(degrade.degrade(to_pil(high[None]), scale, "area+jpeg70"))[0])
    with pytest.raises(ValueError, match="unknown degradation track 'jpeg'"):
        UpscaleDataset(photos, 96, seed=0, track="jpeg")


def test_degradation_tracks_and_the_training_chain(examples):
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB").crop((0, 0, 203, 150))
    for scale in (2, 4):
        clean = degrade.degrade(photo, scale, "clean")
        assert clean.tobytes() == photo.resize((203 // scale, 150 // scale), Image.BICUBIC).tobytes()
        for track in degrade.TRACKS:
            small = degrade.degrade(photo, scale, track, seed=3)
            assert small.size == (203 // scale, 150 // scale)
            assert small.tobytes() == degrade.degrade(photo, scale, track, seed=3).tobytes()  # reproducible
            if track != "clean":  # each degraded track is really something else than the clean downscale
                assert np.abs(np.asarray(small, float) - np.asarray(clean, float)).mean() > 0.5, track
    noisy = [degrade.degrade(photo, 4, "area+noise3+jpeg80", seed=s).tobytes() for s in (0, 1)]
    assert noisy[0] != noisy[1]
    with pytest.raises(ValueError, match="unknown degradation track"):
        degrade.degrade(photo, 4, "fog")
    # the random chain: exact sizes, reproducible from the generator, a clean share and a degraded rest
    draws = [degrade.second_order(photo, 4, np.random.default_rng(seed)) for seed in range(24)]
    assert all(d.size == (50, 37) and level in (0.0, 1.0) for d, level in draws)
    again, _ = degrade.second_order(photo, 4, np.random.default_rng(5))
    assert again.tobytes() == draws[5][0].tobytes()
    bicubic = photo.resize((50, 37), Image.BICUBIC).tobytes()
    assert 1 <= sum(d.tobytes() == bicubic for d, _ in draws) < 20
    assert all(level == 0.0 for d, level in draws if d.tobytes() == bicubic)  # clean draws say so


def test_blur_and_sinc_kernels_are_normalised_low_passes():
    for kernel in (
        degrade.gaussian_kernel(1.5, 1.5, 0.0),
        degrade.gaussian_kernel(2.0, 0.5, 0.7),
        degrade.gaussian_kernel(1.0, 1.0, 0.0, beta=4.0),
        degrade.gaussian_kernel(1.0, 1.5, 0.3, beta=1.5, plateau=True),
        degrade.sinc_kernel(0.5),
    ):
        k = kernel.shape[-1]
        assert kernel.shape == (k, k) and k % 2 == 1
        assert abs(float(kernel.sum()) - 1) < 1e-5 and float(kernel.max()) == float(kernel[k // 2, k // 2])
    iso = degrade.gaussian_kernel(1.5, 1.5, 0.0)
    assert torch.allclose(iso, iso.T) and torch.allclose(iso, iso.flip(0))
    flat = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(degrade.filter2d(flat, degrade.gaussian_kernel(2.0, 0.5, 0.7)), flat, atol=1e-6)


def test_a_model_saved_before_the_head_is_converted_once_then_stylizes_and_says_it_cannot_upscale(
    tiny_pipeline_dir, examples, tmp_path
):
    """from_pretrained loads the current layout only: an older folder names `ganmoco convert`, which writes a copy
    without an upscaling head (the original untouched) that stylizes exactly as the weights always did."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ganmoco.pipeline import ModelLoadError

    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(tiny_pipeline_dir, old)
    weights = old / "generator" / "diffusion_pytorch_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("upscaler.")}, weights)
    before = sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file())
    with pytest.raises(ModelLoadError, match=f"ganmoco convert {re.escape(str(old))} NEW_FOLDER"):
        GanMocoPipeline.from_pretrained(old)
    r = run_cli("convert", old, new)
    assert r.returncode == 0, r.stderr
    assert "saved before the upscaling head existed" in r.stdout
    assert sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file()) == before
    pipe = GanMocoPipeline.from_pretrained(new)
    assert pipe.generator.upscaler is None and pipe.upscale_scales == ()
    reference = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    content, style = examples / "bird_owl.jpg", examples / "van_gogh_bridge.jpg"
    assert image_diff(pipe.stylize(content, style), reference.stylize(content, style)) == 0.0
    with pytest.raises(ValueError, match="this model has no upscaling head"):
        pipe.upscale(content, scale=2)
    r = run_cli("convert", new, tmp_path / "newer")
    assert r.returncode == 2 and "already in the current layout" in r.stderr, r.stderr
    r = run_cli("convert", old, new)
    assert r.returncode == 2 and "exists and is not empty" in r.stderr, r.stderr
    assert not (tmp_path / "newer").exists() and not list(tmp_path.glob("*.converting"))
