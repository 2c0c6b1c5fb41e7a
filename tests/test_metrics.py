"""The evaluator: metric values on cases whose answer is known, the baselines, and `ganmoco eval` end to end."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ganmoco import baselines, evaluate, losses, metrics, pyramid
from ganmoco.data import synthetic_fusion_pair
from ganmoco.images import load_image
from ganmoco.pixels import fit_within, to_tensor

from .conftest import assert_one_error_line, run_cli


@pytest.fixture(scope="module")
def photos(examples):
    return {
        name: to_tensor(fit_within(load_image(examples / f"{name}.jpg"), 96))
        for name in ("castle_chambord", "bird_owl", "van_gogh_starry_night", "van_gogh_bridge")
    }


def test_frechet_distance_equals_torchmetrics_fid():
    torch.manual_seed(0)
    real, fake = torch.randn(12, 64) * 2 + 1, torch.randn(9, 64)

    class Features(nn.Module):
        num_features = 64

        def forward(self, x):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid = FrechetInceptionDistance(feature=Features())
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert metrics.frechet_distance(real, fake) == pytest.approx(fid.compute().item(), rel=1e-5)
    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_reproducible_and_ranks_sets(photos):
    styles = [photos["van_gogh_starry_night"], photos["van_gogh_bridge"]]
    # more outputs than paintings: KID draws subsets of the outputs
    contents = [photos["castle_chambord"], photos["bird_owl"], photos["castle_chambord"].flip(-1), -photos["bird_owl"]]
    first = metrics.distribution_distances(contents, styles)
    torch.rand(100)  # the global random state moves; KID's subsets must not
    assert metrics.distribution_distances(contents, styles) == first
    assert metrics.distribution_distances(styles, styles)["kid"] < first["kid"]


def test_style_metrics_rank_the_obvious_cases(photos):
    content, style = photos["castle_chambord"], photos["van_gogh_starry_night"]
    score = metrics.StyleMetrics()
    itself = score(content, content, style)
    assert tuple(itself) == metrics.STYLE_KEYS  # the evaluator's columns, in order
    assert itself["content_distance"] == pytest.approx(0.0, abs=1e-6) and itself["ssim"] == pytest.approx(1.0)
    assert itself["halo"] == 0.0
    colour = score(baselines.lab_colour_transfer(content, style), content, style)
    # a colour transfer moves the palette toward the painting and keeps the structure
    assert colour["colour_histogram_distance"] < itself["colour_histogram_distance"]
    assert colour["mean_std_distance"] < itself["mean_std_distance"]
    assert colour["ssim"] > 0.6 and colour["content_distance"] > 0
    assert colour["halo"] < 0.1  # a global colour map adds no rims along the edges
    noise = torch.rand_like(content) * 2 - 1
    assert score(noise, content, style)["ssim"] < 0.2
    assert metrics.colour_histogram_distance(style, style) == 0.0


def test_coarse_gram_sees_the_size_of_structures_not_fine_texture(examples):
    # the painting's own structures at half their size (a 2 x 2 tiling) vs the painting mirrored (same structures)
    style = to_tensor(fit_within(load_image(examples / "van_gogh_bridge.jpg"), 256))
    half = F.interpolate(style, scale_factor=0.5, mode="bilinear", antialias=True)
    tiled = torch.cat([torch.cat([half, half.flip(-1)], -1)] * 2, -2)[..., : style.shape[-2], : style.shape[-1]]
    score = metrics.StyleMetrics().style_distances
    mirrored, smaller = score(style.flip(-1), style), score(tiled, style)
    assert smaller["coarse_gram_distance"] > 5 * mirrored["coarse_gram_distance"]
    # the 4 x 4 block means of the painting: every fine stroke gone, the larger structures all there
    factor = metrics.COARSE_FACTOR
    blocks = losses.downscaled(style, factor).repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    flat = score(blocks, style[..., : blocks.shape[-2], : blocks.shape[-1]])
    assert flat["coarse_gram_distance"] < 1e-3 < flat["gram_distance"]


def test_lab_round_trip_and_colour_transfer_statistics(photos):
    x = photos["bird_owl"]
    assert (baselines.lab_to_rgb(baselines.rgb_to_lab(x)) - x).abs().max() < 1e-4
    out = baselines.lab_colour_transfer(x, photos["van_gogh_bridge"])
    lab_out, lab_style = baselines.rgb_to_lab(out), baselines.rgb_to_lab(photos["van_gogh_bridge"])
    # matched up to the sRGB gamut clamp
    assert (lab_out.mean((2, 3)) - lab_style.mean((2, 3))).abs().max() < 3.0


def test_fusion_metrics_on_known_images(photos):
    x = photos["castle_chambord"][..., :64, :64]
    sources = [s[None] for s in synthetic_fusion_pair(x[0], "multi-focus", np.random.default_rng(0))]
    clean, blurred = metrics.fusion_metrics(sources, x), metrics.fusion_metrics(sources, torch.zeros_like(x))
    # the sharp original keeps more edges, information and detail than a flat grey image
    for key in ("EN", "SD", "SF", "AG", "MI", "Qabf"):
        assert clean[key] > blurred[key], key
    assert blurred["EN"] == 0.0 and blurred["SD"] == 0.0
    same = metrics.fusion_metrics([x, x], x)
    assert same["SSIM"] == pytest.approx(1.0) and same["Qabf"] > 0.95
    assert same["MI"] == pytest.approx(2 * metrics.entropy(metrics.gray255(x)), rel=1e-6)  # MI(A, A) = H(A)
    ref = metrics.reference_metrics(x, x)
    assert ref["SSIM_ref"] == pytest.approx(1.0) and ref["PSNR_ref"] > 60
    a, b = x, -x
    assert torch.equal(baselines.max_abs_fusion([a, b * 0.5]), a)
    assert torch.allclose(baselines.average_fusion([a, b]), torch.zeros_like(a))


def test_pyramid_rules_on_known_stacks(photos):
    x = photos["castle_chambord"][..., :96, :96]
    bands = pyramid.laplacian_pyramid(x, 4)
    assert [p.shape[-1] for p in bands] == [96, 48, 24, 12]
    assert torch.allclose(pyramid.collapse_pyramid(bands), x, atol=1e-5)
    # copies of one image fuse to it under both rules
    assert torch.allclose(baselines.laplacian_max_abs_fusion([x, x]), x, atol=1e-5)
    assert torch.allclose(baselines.mertens_fusion([x, x, x]), x, atol=1e-5)
    # a sharp-left / sharp-right focus pair: the pyramid rule keeps the sharp halves, averaging cannot
    pair = synthetic_fusion_pair(x[0], "multi-focus", np.random.default_rng(0), shape="half")
    sources = [pair[:1], pair[1:]]
    lap = metrics.reference_metrics(baselines.laplacian_max_abs_fusion(sources), x)["PSNR_ref"]
    avg = metrics.reference_metrics(baselines.average_fusion(sources), x)["PSNR_ref"]
    assert lap > avg + 3, (lap, avg)
    # an exposure bracket: Mertens favours the well-exposed frame, so it lies between the two
    bracket = synthetic_fusion_pair(x[0], "multi-exposure", np.random.default_rng(0))
    fused = baselines.mertens_fusion([bracket[:1], bracket[1:]])
    assert bracket[0].mean() < fused.mean() < bracket[1].mean()


def test_gatys_moves_toward_the_style(photos):
    content, style = photos["castle_chambord"][..., :64, :64], photos["van_gogh_starry_night"]
    score = metrics.StyleMetrics()
    out = baselines.Gatys(steps=25)(content, style)
    assert out.shape == content.shape and out.abs().max() <= 1
    assert score(out, content, style)["gram_distance"] < score(content, content, style)["gram_distance"]


def test_eval_command_writes_json_and_grids(tmp_path, examples, tiny_pipeline_dir):
    from ganmoco.baselines import AdaINDecoder

    adain = tmp_path / "adain"
    AdaINDecoder().save_pretrained(adain)
    out = tmp_path / "eval"
    r = run_cli(
        "eval",
        "--model", str(tiny_pipeline_dir),
        "--contents", str(examples / "bird_owl.jpg"), str(examples / "castle_chambord.jpg"),
        "--styles", str(examples / "van_gogh_bridge.jpg"), str(examples / "van_gogh_starry_night.jpg"),
        "--adain", str(adain),
        "--gatys-pairs", "2", "--gatys-steps", "2",
        "--max-side", "64", "--fusion-size", "64",
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["style"]) == {"ganmoco", "content", "colour-transfer", "adain", "gatys"}
    assert report["style"]["gatys"]["summary"]["pairs"] == 2 and report["style"]["ganmoco"]["summary"]["pairs"] == 4
    summary = report["style"]["content"]["summary"]
    assert (
        summary["content_distance"] == 0
        and summary["fid"] > 0
        and summary["art_fid"] == pytest.approx(1 + summary["fid"])
    )
    assert set(report["fusion"]) == {"multi-focus", "multi-exposure"}
    assert set(report["fusion"]["multi-focus"]) == {
        "ganmoco", "ganmoco (task named)", "ganmoco, head alone (pick_sharpest=False)", "average", "max-abs",
        "laplacian max-abs", "mertens", "reference"
    }  # fmt: skip
    assert (out / "grid_fusion.png").is_file()
    assert set(report["fusion"]["multi-focus"]["average"]) == {
        "EN", "SD", "SF", "AG", "MI", "SSIM", "VIF", "Qabf", "PSNR_ref", "SSIM_ref"
    }  # fmt: skip
    # the clean photo itself: scored on the no-reference metrics, shown as "-" on the reference ones
    assert "PSNR_ref" not in report["fusion"]["multi-focus"]["reference"]
    assert report["fusion"]["multi-focus"]["reference"]["SF"] > report["fusion"]["multi-focus"]["average"]["SF"]
    assert "| reference | " in (out / "metrics.md").read_text() and "| - | - |" in (out / "metrics.md").read_text()
    for method in report["style"]:
        grid = Image.open(out / f"grid_{method}.png")
        assert grid.size == (160 * 3, 160 * 3)
    assert "| ganmoco |" in (out / "metrics.md").read_text()


def test_eval_bad_input_is_one_error_line(tmp_path, examples):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    r = run_cli("eval", "--contents", str(bad), "--styles", str(examples), "--out", str(tmp_path / "o"))
    assert_one_error_line(r)
    assert "broken.jpg" in r.stderr
    r = run_cli("eval", "--contents", str(examples / "bird_owl.jpg"), "--styles", str(examples / "van_gogh_bridge.jpg"),
                "--out", str(tmp_path / "o"))  # fmt: skip
    assert_one_error_line(r)
    assert "at least 2" in r.stderr
    assert not (tmp_path / "o").exists()


def test_warping_error_of_known_motion(examples):
    """Clips of known motion: a pan's frames line up exactly once moved, a zoom's up to resampling, unrelated
    frames not at all."""
    photo = load_image(examples / "castle_chambord.jpg")
    pan = evaluate.motion_clip(photo, "pan", 4, (160, 96), 4.0)
    assert [f.size for f in pan] == [(160, 96)] * 4 and evaluate.warping_error(pan, "pan", 4.0) == 0.0
    zoom = evaluate.motion_clip(photo, "zoom", 4, (160, 96), 1.02)
    assert 0 < evaluate.warping_error(zoom, "zoom", 1.02) < 4.0
    noise = [Image.effect_noise((160, 96), 60).convert("RGB") for _ in range(3)]
    assert evaluate.warping_error(noise, "pan", 4.0) > 20


def test_eval_video_section(tmp_path, examples, tiny_pipeline_dir):
    out = tmp_path / "eval"
    r = run_cli(
        "eval", "--model", str(tiny_pipeline_dir), "--no-style", "--no-fusion", "--video",
        "--contents", str(examples / "bird_owl.jpg"), "--styles", str(examples / "van_gogh_bridge.jpg"),
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    video = json.loads((out / "metrics.json").read_text())["video"]
    assert set(video) == {"pan", "zoom"} and video["pan"]["input"] == 0.0
    for motion in video.values():
        assert motion["per-frame"] > motion["input"] and motion["video"] > 0 and motion["video_frames_per_s"] > 0
        # the video path moves the previous frame's texture with the scene: less flicker, as stylized
        assert motion["video"] < motion["per-frame"]
        for key in ("gram_distance", "colour_histogram_distance"):
            assert motion[f"video {key}"] > 0 and motion[f"per-frame {key}"] > 0
    assert "| pan | 0.00 |" in (out / "metrics.md").read_text()


def test_eval_sizes_scores_each_photo_size_whole_and_at_1_to_1(tmp_path, examples, tiny_pipeline_dir):
    """The photo-size section: every pair at each side, scored seen whole and on a 1:1 crop; a photo within one
    crop is its own crop, a larger one is not; painting coarse to fine and in one pass are the same call up to
    the paint side and differ above it; the crops grid has a row per side and a column per method."""
    out = tmp_path / "eval"
    r = run_cli(
        "eval", "--model", str(tiny_pipeline_dir), "--no-style", "--no-fusion", "--sizes", "512", "768",
        "--size-pairs", "1",
        "--contents", str(examples / "bird_owl.jpg"), str(examples / "castle_chambord.jpg"),
        "--styles", str(examples / "van_gogh_bridge.jpg"), str(examples / "van_gogh_starry_night.jpg"),
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sizes = json.loads((out / "metrics.json").read_text())["sizes"]
    assert set(sizes) == {"512", "768"}
    default, one_pass = "ganmoco", "ganmoco, one pass at full size"
    for side, methods in sizes.items():
        assert set(methods) == {default, one_pass}
        for r in methods.values():
            assert r["pairs"] == 1 and r["seconds"] > 0 and set(r) == {"pairs", "seconds", "whole", "crop", "per_pair"}
            assert 0 < r["whole"]["ssim"] < 1 and r["whole"]["gram_distance"] > 0
        if side == "512":
            assert methods[default]["whole"] == methods[one_pass]["whole"]
            assert methods[default]["whole"] == methods[default]["crop"]
        else:
            assert methods[default]["whole"] != methods[one_pass]["whole"]
            assert methods[default]["whole"]["ssim"] != methods[default]["crop"]["ssim"]
    assert Image.open(out / "grid_sizes.png").size == (256 * 4, 276 * 2)  # seen whole, photo, two methods
    assert "| 768 | ganmoco |" in (out / "metrics.md").read_text()
    r = run_cli("eval", "--no-style", "--no-fusion", "--sizes", "32", "--contents", str(examples / "bird_owl.jpg"),
                "--styles", str(examples / "van_gogh_bridge.jpg"), "--out", str(tmp_path / "o"))  # fmt: skip
    assert_one_error_line(r)
    assert "--sizes must be at least 64" in r.stderr
