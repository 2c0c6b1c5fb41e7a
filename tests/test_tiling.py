import numpy as np
import pytest
import torch
from PIL import Image

from ganmoco import GanMocoGenerator, GanMocoPipeline, StyleEncoder
from ganmoco.images import load_image
from ganmoco.models.generator import NormStats
from ganmoco.pipeline import AUTO_TILE_PIXELS
from ganmoco.pixels import to_tensor
from ganmoco.tiling import run_tiled


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    generator = GanMocoGenerator(num_res_blocks=2).eval()  # the default architecture: the real receptive field
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return GanMocoPipeline(generator, StyleEncoder(trunk_layer="Conv2d_4a_3x3", image_size=96))


def test_tiles_match_the_untiled_result(pipe, examples):
    image = load_image(examples / "castle_chambord.jpg").resize((700, 520))
    x = to_tensor(image)
    code = pipe.style_code(examples / "van_gogh_bridge.jpg")
    with torch.no_grad():
        whole = pipe.generator(x, code)
        for tile in (256, 200, 128):
            tiled = pipe._stylize_tiled(x, code, tile)
            assert (tiled - whole).abs().max().item() < 1e-4, tile
    a = np.asarray(pipe.stylize(image, examples / "van_gogh_bridge.jpg", tile=False), np.int16)
    b = np.asarray(pipe.stylize(image, examples / "van_gogh_bridge.jpg", tile=192), np.int16)
    assert np.abs(a - b).max() <= 1  # 8-bit rounding at most


def test_dilated_trunk_tiles_with_its_longer_reach(examples):
    """The shipped layout with a dilated trunk reaches 97 px: tiles widened by that match the whole image, where
    the undilated layout's 64-px margin would not."""
    torch.manual_seed(0)
    layout = dict(base_channels=8, max_channels=32, num_downsamples=2, num_res_blocks=5, stem_kernel_size=9)
    generator = GanMocoGenerator(**layout, encoder_norm=False, upsample="nearest", trunk_dilation=2).eval()
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    assert (generator.stylize_reach, GanMocoGenerator(**layout).stylize_reach) == (97, 57)
    pipe = GanMocoPipeline(generator, StyleEncoder(trunk_layer="Conv2d_4a_3x3", image_size=96))
    x = to_tensor(load_image(examples / "castle_chambord.jpg").resize((600, 440)))
    code = pipe.style_code(examples / "van_gogh_bridge.jpg")
    with torch.no_grad():
        whole = generator(x, code)
        assert (pipe._stylize_tiled(x, code, 128) - whole).abs().max().item() < 1e-4
        shared = generator.norm_stats(x, code)
        short = run_tiled(x, lambda piece, box: generator(piece, code, stats=NormStats(given=shared)), 128, 64)
        assert (short - whole).abs().max().item() > 1e-3


def test_tiles_with_a_mask_match(pipe, examples):
    image = load_image(examples / "bird_owl.jpg").resize((520, 400))
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (0, 0, 260, 400))
    style = examples / "van_gogh_starry_night.jpg"
    a = np.asarray(pipe.stylize(image, style, mask=mask, tile=False), np.int16)
    b = np.asarray(pipe.stylize(image, style, mask=mask, tile=128), np.int16)
    assert np.abs(a - b).max() <= 1


def test_large_images_tile_by_themselves(tiny_pipeline_dir, examples):
    tiny = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    side = int(AUTO_TILE_PIXELS**0.5) + 64
    big = load_image(examples / "castle_neuschwanstein.jpg").resize((side, side - 100))
    out = tiny.stylize(big, examples / "van_gogh_bridge.jpg")
    assert out.size == big.size
    with pytest.raises(ValueError, match="tile"):
        tiny.stylize(big.resize((100, 100)), examples / "van_gogh_bridge.jpg", tile=16)


def test_colour_matching_model_tiles_blends_and_keeps_presets(examples, tmp_path):
    """With colour statistics in the code: tiles still match, strength 0 and an empty mask give the photo, and
    a preset holds the whole code."""
    torch.manual_seed(0)
    generator = GanMocoGenerator(base_channels=8, max_channels=16, code_dim=16, match_colors=True).eval()
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tiny = GanMocoPipeline(generator, StyleEncoder(code_dim=16, trunk_layer="Conv2d_4a_3x3", image_size=96))
    tiny.save_pretrained(tmp_path / "model")
    tiny = GanMocoPipeline.from_pretrained(tmp_path / "model")
    image = load_image(examples / "bird_owl.jpg").resize((360, 280))
    style = examples / "van_gogh_starry_night.jpg"
    whole = np.asarray(tiny.stylize(image, style, tile=False), np.int16)
    assert np.abs(whole - np.asarray(tiny.stylize(image, style, tile=128), np.int16)).max() <= 1
    weak = np.asarray(tiny.stylize(image, style, strength=0.0), np.int16)
    assert (
        np.abs(weak - np.asarray(tiny.stylize(image, style, mask=Image.new("L", image.size, 0)), np.int16)).max() <= 1
    )
    assert np.abs(weak - np.asarray(image, np.int16)).max() <= 1  # strength 0 and an empty mask: the photo
    assert np.abs(weak - whole).mean() > 1.0
    # a mask picks, per region, the picture that region's code gives (not colours shifted by the other region)
    half = Image.new("L", image.size, 0)
    half.paste(255, (0, 0, 180, 280))
    masked = np.asarray(tiny.stylize(image, style, mask=half), np.int16)
    assert np.abs(masked[:, :150] - whole[:, :150]).max() <= 1 and np.abs(masked[:, 210:] - weak[:, 210:]).max() <= 1
    tiny.save_preset("starry", [style])
    assert tiny.preset("starry").shape == (1, tiny.generator.style_code_dim)
    assert np.array_equal(np.asarray(tiny.stylize(image, tiny.preset("starry")), np.int16), whole)
