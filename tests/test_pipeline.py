import json
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ganmoco import GanMocoPipeline, ImageError, ModelLoadError, options
from ganmoco.pipeline import DEFAULT_MODEL

from .conftest import image_diff


def fine_detail(image: Image.Image) -> float:
    """Mean |Laplacian| of the luminance: how fine (or, at 1:1, how crisp) the painted strokes are."""
    grey = np.asarray(image.convert("L"), np.float32)
    return np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]).mean()


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_dir):
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    # an untrained generator starts with identity modulation; give the code a real effect
    with torch.no_grad():
        for p in pipe.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return pipe


def test_round_trip_through_a_folder_is_exact(tiny_pipeline_dir, examples, tmp_path):
    a = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    a.save_pretrained(tmp_path)
    b = GanMocoPipeline.from_pretrained(tmp_path)
    content, style = examples / "castle_chambord.jpg", examples / "van_gogh_starry_night.jpg"
    assert image_diff(a.stylize(content, style), b.stylize(content, style)) == 0.0
    assert (
        json.loads((tmp_path / "model_index.json").read_text())["generator"] == ["ganmoco", "GanMocoGenerator"]
        or (tmp_path / "generator" / "config.json").is_file()
    )


def test_stylize_keeps_size_and_changes_pixels(pipe, examples):
    content = Image.open(examples / "bird_owl.jpg")
    out = pipe.stylize(content, examples / "van_gogh_night_cafe.jpg")
    assert out.size == content.size and out.mode == "RGB"
    assert image_diff(out, content.convert("RGB")) > 1.0


def test_blend_strength_and_weights(pipe, examples):
    content = examples / "bird_duck.jpg"
    s1, s2 = examples / "van_gogh_starry_night.jpg", examples / "van_gogh_bridge.jpg"
    only1 = pipe.stylize(content, [s1, s2], weights=[1, 0])
    assert image_diff(only1, pipe.stylize(content, s1)) == 0.0
    assert image_diff(pipe.stylize(content, [s1, s2], weights=[1, 1]), only1) > 0.0
    with pytest.raises(ValueError, match="strength"):
        pipe.stylize(content, s1, strength=1.5)
    with pytest.raises(ValueError, match="strength"):
        pipe.stylize(content, s1, strength=float("nan"))
    with pytest.raises(ValueError, match="weights"):
        pipe.stylize(content, [s1, s2], weights=[1])


def test_strength_moves_from_the_photo_to_the_full_style(pipe, examples):
    """0 is the photo itself (within one level), 1 the full stylization, and the distance to the photo grows
    with the strength in between."""
    content = Image.open(examples / "bird_duck.jpg").convert("RGB")
    style = examples / "van_gogh_starry_night.jpg"
    photo = np.asarray(content, dtype=np.int16)
    assert np.abs(np.asarray(pipe.stylize(content, style, strength=0.0), dtype=np.int16) - photo).max() <= 1
    distances = [image_diff(pipe.stylize(content, style, strength=s), content) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert distances == sorted(distances) and distances[0] < 0.5 < distances[-1], distances
    assert image_diff(pipe.stylize(content, style, strength=1.0), pipe.stylize(content, style)) == 0.0


def test_mask_chooses_where_the_style_goes(pipe, examples):
    content = Image.open(examples / "castle_chenonceau.jpg")
    style = examples / "van_gogh_starry_night.jpg"
    w, h = content.size
    everywhere = Image.new("L", content.size, 255)
    nowhere = Image.new("L", content.size, 0)
    assert image_diff(pipe.stylize(content, style, mask=everywhere), pipe.stylize(content, style)) < 0.5
    photo = np.asarray(content.convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(pipe.stylize(content, style, mask=nowhere), dtype=np.int16) - photo).max() <= 1
    half = Image.new("L", content.size, 0)
    half.paste(255, (0, 0, w // 2, h))
    out = np.asarray(pipe.stylize(content, style, mask=half), dtype=np.int16)
    full = np.asarray(pipe.stylize(content, style), dtype=np.int16)
    # left of the edge (nearly) the full stylization, right of it the photo itself, a soft edge between
    assert np.abs(out - full)[:, : w // 2 - 16].mean() < np.abs(out - full)[:, w // 2 + 16 :].mean() / 2
    assert np.abs(out - photo)[:, w // 2 + 16 :].max() <= 1
    assert np.abs(out - photo)[:, w // 2 - 16 : w // 2 + 16].mean() > 1.0


def test_preserve_color_keeps_the_content_chroma(pipe, examples):
    content = Image.open(examples / "bird_macaw.jpg").convert("RGB")
    out = pipe.stylize(content, examples / "van_gogh_night_cafe.jpg", preserve_color=True)
    assert image_diff(out, content) > 2.0  # the luminance did change
    # chroma survives the RGB round trip wherever no channel was clipped at 0 or 255
    rgb = np.asarray(out)
    unclipped = ((rgb > 0) & (rgb < 255)).all(-1)
    assert unclipped.mean() > 0.5
    chroma = np.asarray(out.convert("YCbCr"), dtype=np.int16)[..., 1:]
    chroma0 = np.asarray(content.convert("YCbCr"), dtype=np.int16)[..., 1:]
    assert np.abs(chroma - chroma0)[unclipped].mean() < 1.0


def test_fuse_two_and_three_images(pipe, examples):
    a, b = Image.open(examples / "castle_chambord.jpg"), examples / "castle_chenonceau.jpg"
    out = pipe.fuse([a, b], task="multi-focus")
    assert out.size == a.size
    assert pipe.fuse([a, b, examples / "exposure_dark.jpg"]).size == a.size
    with pytest.warns(UserWarning, match="resized"):  # the same frame at another size: resized, with a word
        assert pipe.fuse([a, a.resize((224, 168))]).size == a.size
    with pytest.raises(ValueError, match="aspect ratio"):  # another frame altogether: it would ghost
        pipe.fuse([a, examples / "bird_owl.jpg"])
    with pytest.raises(ValueError, match="at least 2"):
        pipe.fuse([a])
    with pytest.raises(ValueError, match="task"):
        pipe.fuse([a, b], task="sharpen")


def test_bad_inputs_are_clear_errors(pipe, tmp_path, examples):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ImageError):
        pipe.stylize(bad, examples / "van_gogh_bridge.jpg")
    with pytest.raises(ImageError):
        pipe.fuse([examples / "bird_owl.jpg", bad])


def test_missing_and_pickle_only_folders(tmp_path, tiny_pipeline_dir, monkeypatch):
    with pytest.raises(ModelLoadError, match="does not exist"):
        GanMocoPipeline.from_pretrained(tmp_path / "nope")
    monkeypatch.chdir(tmp_path)
    for local in ("./nope-model", "../nope-model", "~/nope-model", "a/b/c"):  # paths, never Hub ids
        with pytest.raises(ModelLoadError, match=f"model folder '{re.escape(local)}' does not exist"):
            GanMocoPipeline.from_pretrained(local)
    with pytest.raises(ModelLoadError, match="model_index.json"):
        GanMocoPipeline.from_pretrained(tmp_path)
    import shutil

    copy = tmp_path / "pickled"
    shutil.copytree(tiny_pipeline_dir, copy)
    weights = copy / "generator" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelLoadError, match="safetensors"):
        GanMocoPipeline.from_pretrained(copy)


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="Hub"):
        GanMocoPipeline.from_pretrained("someone/not-cached-ganmoco")


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda d: (d / "generator" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage" * 10),
            "diffusion_pytorch_model.safetensors",
        ),
        (lambda d: (d / "generator" / "config.json").write_text("{not json"), "config.json"),
        (
            lambda d: (d / "generator" / "config.json").write_text(
                json.dumps(json.loads((d / "generator" / "config.json").read_text()) | {"base_channels": -3})
            ),
            "base_channels",
        ),
        (
            lambda d: (d / "style_encoder" / "config.json").write_text(
                json.dumps(json.loads((d / "style_encoder" / "config.json").read_text()) | {"trunk_layer": "fc"})
            ),
            "trunk_layer",
        ),
    ],
)
def test_corrupt_model_folders_name_the_problem(tiny_pipeline_dir, tmp_path, damage, message):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    damage(folder)
    with pytest.raises((OSError, ValueError), match=message):
        GanMocoPipeline.from_pretrained(folder)


def test_presets_save_load_and_stylize(tiny_pipeline_dir, examples, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    pipe = GanMocoPipeline.from_pretrained(folder)
    with torch.no_grad():
        for p in pipe.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    styles = [examples / "van_gogh_starry_night.jpg", examples / "van_gogh_bridge.jpg"]
    path = pipe.save_preset("night-bridge", styles, weights=[3, 1])
    assert path == folder / "presets" / "night-bridge.safetensors"
    assert list(pipe.presets) == ["night-bridge"]
    code = pipe.preset("night-bridge")
    assert torch.allclose(code, pipe.blend_codes(styles, [3, 1]))
    content = examples / "bird_owl.jpg"
    assert image_diff(pipe.stylize(content, code), pipe.stylize(content, styles, weights=[3, 1])) == 0.0
    with pytest.raises(ValueError, match="unknown preset"):
        pipe.preset("nope")
    with pytest.raises(ValueError, match="preset name"):
        pipe.save_preset("../evil", styles)
    with pytest.raises(ValueError, match="style code"):
        pipe.stylize(content, torch.zeros(1, 3))


def test_saved_models_keep_their_presets_and_precision(tmp_path, monkeypatch, examples):
    """save_pretrained carries the presets along and keeps the precision the weights were stored in; a preset
    saved for the bundled model goes to the user's cache, never into the installed package."""
    monkeypatch.setenv("GANMOCO_CACHE", str(tmp_path / "cache"))
    pipe = GanMocoPipeline.from_pretrained()
    shipped = set(pipe.presets)
    path = pipe.save_preset("mine", [examples / "van_gogh_bridge.jpg"])
    assert path == tmp_path / "cache" / "presets" / "default-model" / "mine.safetensors"
    assert set(pipe.presets) == shipped | {"mine"}
    pipe.save_pretrained(tmp_path / "copy")
    copy = GanMocoPipeline.from_pretrained(tmp_path / "copy")
    assert set(copy.presets) == shipped | {"mine"}
    assert torch.equal(copy.preset("mine"), pipe.preset("mine"))
    bundled = sum(f.stat().st_size for f in DEFAULT_MODEL.glob("*/*.safetensors"))
    saved = sum(f.stat().st_size for f in (tmp_path / "copy").glob("*/*.safetensors"))
    assert saved < 1.05 * bundled  # fp16 as shipped, not fp32 (twice the size)
    content = examples / "bird_owl.jpg"
    style = examples / "van_gogh_night_cafe.jpg"
    assert image_diff(copy.stylize(content, style), pipe.stylize(content, style)) == 0.0


def test_bundled_default_model_loads_offline_and_stylizes(examples):
    pipe = GanMocoPipeline.from_pretrained()
    assert pipe.generator.dtype == torch.float32
    assert {"starry-night", "night-cafe", "bridge", "church-auvers", "starry-cafe"} <= set(pipe.presets)
    content = Image.open(examples / "castle_chambord.jpg")
    out = pipe.stylize(content, examples / "van_gogh_night_cafe.jpg")
    assert out.size == content.size and image_diff(out, content.convert("RGB")) > 5.0
    # a trained model: different styles give clearly different pictures
    assert image_diff(out, pipe.stylize(content, pipe.preset("starry-night"))) > 5.0


def test_style_scale_paints_larger_patterns_and_auto_picks_per_style(examples):
    """The bundled model: a drawn repeating pattern is painted at the larger stroke scale, two bundled paintings
    at 1 (Starry Night's swirls, since the halo fine-tune, at 1.5); a larger scale paints a coarser pattern (less
    fine detail); "auto" gives the picked scale's code."""
    pipe = GanMocoPipeline.from_pretrained()
    rings = Image.new("RGB", (512, 512), "white")
    draw = ImageDraw.Draw(rings)
    for y in range(0, 512, 64):
        for x in range(0, 512, 64):
            draw.ellipse((x + 8, y + 8, x + 56, y + 56), outline=(60, 60, 60), width=8)
    assert len(pipe.style_encoder.feature_statistics(torch.zeros(1, 3, 64, 64))) == 3
    assert pipe.auto_style_scale(rings) == 1.5
    for painting in ("van_gogh_bridge.jpg", "van_gogh_night_cafe.jpg"):
        assert pipe.auto_style_scale(examples / painting) == 1.0
    assert torch.equal(pipe.style_code(rings), pipe.style_code(rings, 1.5))
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB")

    small, large = (pipe.stylize(photo, rings, style_scale=s) for s in (1.0, 2.0))
    assert fine_detail(large) < 0.8 * fine_detail(small)
    for bad in (0, -1, 10, "big", float("nan")):
        with pytest.raises(ValueError, match="style_scale must be"):
            pipe.stylize(photo, rings, style_scale=bad)


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (2000, 2), (17, 9), (16, 20), (40, 33)])
def test_tiny_and_extreme_aspect_images(pipe, examples, size):
    content = Image.open(examples / "bird_owl.jpg").convert("RGB").resize(size)
    if min(size) >= 16:
        assert pipe.stylize(content, examples / "van_gogh_bridge.jpg").size == size
    else:  # no stroke fits: one sentence naming the minimum, for one photo, a list or video frames alike
        for call in (
            lambda: pipe.stylize(content, examples / "van_gogh_bridge.jpg"),
            lambda: pipe.stylize([examples / "bird_duck.jpg", content], examples / "van_gogh_bridge.jpg"),
            lambda: list(pipe.stylize_frames([content], examples / "van_gogh_bridge.jpg")),
        ):
            with pytest.raises(ImageError, match=f"at least 16 px on its shorter side, got {size[0]}x{size[1]}"):
                call()
    assert pipe.fuse([content, content.transpose(Image.FLIP_LEFT_RIGHT)]).size == size
    if min(size) >= 32:
        assert pipe.stylize(examples / "bird_duck.jpg", content).size == Image.open(examples / "bird_duck.jpg").size
    else:  # too small or thin to show a style: refused with the minimum named
        with pytest.raises(ImageError, match="at least 32 px"):
            pipe.stylize(examples / "bird_duck.jpg", content)


def test_concurrent_calls_give_the_sequential_images(tiny_pipeline_dir, examples):
    """The generator keeps no state: tiled stylizations, video frames and fusions from two threads at once
    equal the same calls made one after another (there is no global lock to serialise them)."""
    from concurrent.futures import ThreadPoolExecutor

    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    assert not hasattr(pipe, "_lock")
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB")
    frames = [photo.rotate(a) for a in (0, 2, 4)]
    calls = [
        lambda: [pipe.stylize(photo, examples / "van_gogh_bridge.jpg", tile=128)],
        lambda: list(pipe.stylize_frames(frames, examples / "van_gogh_starry_night.jpg", consistency=0.9)),
        lambda: [pipe.stylize(photo, examples / "van_gogh_night_cafe.jpg", tile=96, strength=0.6)],
        lambda: [pipe.fuse([examples / "focus_near.jpg", examples / "focus_far.jpg"])],
    ]
    sequential = [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        concurrent = list(pool.map(lambda call: call(), calls * 2))
    for got, want in zip(concurrent, sequential * 2, strict=True):
        assert [np.asarray(im).tobytes() for im in got] == [np.asarray(im).tobytes() for im in want]


@pytest.mark.parametrize("size", [(600, 150), (1000, 120), (150, 600)])
def test_auto_style_scale_works_for_any_aspect_ratio_with_default_configs(examples, size):
    """A model made with the default configs (what the README's training command builds) picks a scale for
    landscape and portrait styles alike (the encoder's strides used to be read off rounded width ratios, which
    skipped one for landscape images)."""
    from ganmoco import GanMocoGenerator, StyleEncoder

    pipe = GanMocoPipeline(GanMocoGenerator(), StyleEncoder())
    style = Image.open(examples / "van_gogh_bridge.jpg").convert("RGB").resize(size)
    assert pipe.auto_style_scale(style) in (1.0, 1.5)
    assert (
        pipe.stylize(examples / "castle_chambord.jpg", style, style_scale="auto").size
        == Image.open(examples / "castle_chambord.jpg").size
    )


def test_split_styles_puts_the_first_style_inside_the_mask_and_the_others_blend_outside(
    tiny_pipeline_dir, examples, tmp_path
):
    """One home for the masked multi-style split (the app, the CLI's --split-styles and Python alike): the same
    image as two masks, the mask and its inverse, with the first style and the blend of the others."""
    from PIL import ImageOps

    from .conftest import run_cli

    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    content = examples / "bird_owl.jpg"
    styles = [examples / "van_gogh_starry_night.jpg", examples / "van_gogh_bridge.jpg", examples / "bird_owl.jpg"]
    width, height = Image.open(content).size
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    got = pipe.stylize(content, styles, weights=[1, 3, 1], mask=mask, split_styles=True)
    outside = pipe.blend_codes(styles[1:], [3, 1])
    expected = pipe.stylize(content, [styles[0], outside], mask=[mask, ImageOps.invert(mask)])
    assert image_diff(got, expected) == 0.0
    assert image_diff(got, pipe.stylize(content, styles, weights=[1, 3, 1], mask=mask)) > 0.5
    with pytest.raises(ValueError, match="split_styles needs one mask and at least 2 styles"):
        pipe.stylize(content, styles[:1], mask=mask, split_styles=True)
    with pytest.raises(ValueError, match="split_styles needs one mask"):
        pipe.stylize(content, styles, split_styles=True)
    mask_file, out = tmp_path / "mask.png", tmp_path / "out.png"
    mask.save(mask_file)
    args = ["stylize", content, "--model", tiny_pipeline_dir, "--out", out, "--mask", mask_file, "--split-styles"]
    r = run_cli(*args, *(x for s in styles for x in ("--style", s)), "--weights", "1", "3", "1")
    assert r.returncode == 0, r.stderr
    assert image_diff(Image.open(out), got) <= 0.01


def test_paint_levels_double_from_the_paint_side_to_the_photo():
    assert options.paint_levels((4000, 3000), 512) == [(384, 512), (768, 1024), (1536, 2048), (3000, 4000)]
    assert options.paint_levels((700, 520), 512) == [(380, 512), (520, 700)]
    assert options.paint_levels((512, 300), 512) == [(300, 512)]  # no larger than the paint side: one pass
    assert options.paint_levels((4000, 3000), None) == [(3000, 4000)]  # "full"
    # a long strip's coarsest level keeps MIN_LEVEL_SIDE on its shorter side, not a line of pixels
    assert options.paint_levels((20000, 100), 512) == [(64, 12800), (100, 20000)]
    assert options.paint_levels((20000, 40), 512) == [(40, 20000)]
    assert options.paint_side("full") is None and options.paint_side("1024") == 1024
    for bad in (0, 100, 512.5, "big", float("nan"), -512):
        with pytest.raises(ValueError, match="paint_side must be"):
            options.paint_side(bad)


def test_a_large_photo_is_the_same_painting_seen_whole_with_brush_work_at_1_to_1(examples):
    """The bundled model: a photo 4x larger than the paint side, seen whole, is close to the photo painted at the
    paint side (strokes in proportion to the picture), while the one-pass painting at full size is not (its
    strokes shrink to grain when seen whole); at 1:1 the result has strokes' edges, not the blur of a magnified
    painting."""
    pipe = GanMocoPipeline.from_pretrained()
    style = examples / "van_gogh_starry_night.jpg"
    small = Image.open(examples / "castle_chambord.jpg").convert("RGB").resize((384, 256), Image.LANCZOS)
    large = small.resize((1536, 1024), Image.BICUBIC)
    painted_small = pipe.stylize(small, style, paint_side=384)
    default, one_pass = pipe.stylize(large, style, paint_side=384), pipe.stylize(large, style, paint_side="full")
    assert default.size == one_pass.size == large.size

    def seen_whole(image):
        return image.resize(small.size, Image.LANCZOS)

    # 3.2 against 29.3 levels: seen whole, what the finer levels add is a tenth of what painting in one pass changes
    assert image_diff(seen_whole(default), painted_small) < 0.15 * image_diff(seen_whole(one_pass), painted_small)
    magnified = painted_small.resize(large.size, Image.BICUBIC)

    assert fine_detail(default) > 3 * fine_detail(magnified)
    # the default paint side is the pipeline's: a photo no larger than it is painted in one pass as before
    assert image_diff(pipe.stylize(small, style), pipe.stylize(small, style, paint_side="full")) == 0.0
    with pytest.raises(ValueError, match="paint_side must be"):
        pipe.stylize(small, style, paint_side=64)


def test_paint_levels_keep_masks_strength_lists_and_tiles(pipe, examples):
    """The tiny model on a photo above the paint side: a mask's black part stays the photo, strength 0 gives the
    photo, a list gives the single calls, and tiles give the untiled result."""
    photo = Image.open(examples / "bird_owl.jpg").convert("RGB").resize((300, 200))
    style = examples / "van_gogh_bridge.jpg"
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (0, 0, 150, 200))
    masked = np.asarray(pipe.stylize(photo, style, mask=mask, paint_side=128), np.int16)
    right = np.asarray(photo, np.int16)[:, 170:]
    assert (
        np.abs(masked[:, 170:] - right).max() <= 2 and np.abs(masked[:, :130] - np.asarray(photo)[:, :130]).mean() > 5
    )
    assert image_diff(pipe.stylize(photo, style, strength=0.0, paint_side=128), photo) < 0.6
    one = pipe.stylize(photo, style, paint_side=128)
    assert image_diff(one, pipe.stylize(photo, style, paint_side="full")) > 1.0
    assert image_diff(pipe.stylize([photo, photo], style, paint_side=128)[1], one) < 0.6
    assert (
        np.abs(
            np.asarray(pipe.stylize(photo, style, paint_side=128, tile=96), np.int16) - np.asarray(one, np.int16)
        ).max()
        <= 1
    )
