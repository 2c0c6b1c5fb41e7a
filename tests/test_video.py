from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from ganmoco import GanMocoPipeline
from ganmoco.video import VideoError, probe, read_frames, write_frames

from .conftest import assert_one_error_line, run_cli


@pytest.fixture(scope="module")
def clip(tmp_path_factory, examples):
    """A real 12-frame H.264 clip: a slow pan over a photo."""
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB").resize((200, 120))
    frames = [photo.crop((2 * t, 0, 2 * t + 160, 96)) for t in range(12)]
    return write_frames(frames, tmp_path_factory.mktemp("video") / "pan.mp4", Fraction(12))


def test_cli_video_keeps_size_rate_and_frame_count(clip, tiny_pipeline_dir, examples, tmp_path):
    out = tmp_path / "styled.mp4"
    r = run_cli(
        "video",
        str(clip),
        "--style",
        str(examples / "van_gogh_starry_night.jpg"),
        "--model",
        str(tiny_pipeline_dir),
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rate, _, size = probe(out)
    assert size == (160, 96) and rate == 12
    frames = list(read_frames(out))
    assert len(frames) == 12
    source = list(read_frames(clip))
    assert np.abs(np.asarray(frames[5], np.int16) - np.asarray(source[5], np.int16)).mean() > 1.0


def test_static_clip_gives_a_static_result(tiny_pipeline_dir, examples):
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    frame = Image.open(examples / "bird_owl.jpg").convert("RGB").resize((96, 64))
    outs = [np.asarray(f, np.int16) for f in pipe.stylize_frames([frame] * 5, examples / "van_gogh_bridge.jpg")]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_not_a_video_is_a_clear_error(tmp_path, tiny_pipeline_dir, examples):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    with pytest.raises(VideoError):
        probe(bad)
    out = tmp_path / "out.mp4"
    r = run_cli(
        "video",
        str(bad),
        "--style",
        str(examples / "van_gogh_bridge.jpg"),
        "--model",
        str(tiny_pipeline_dir),
        "--out",
        str(out),
    )
    assert_one_error_line(r)
    assert not out.exists()
    # a still image opens as a one-frame "video" in FFmpeg: refused as what it is
    still = tmp_path / "photo.png"
    Image.open(examples / "bird_owl.jpg").save(still)
    for path in (examples / "bird_owl.jpg", still):
        with pytest.raises(VideoError, match="is a still image, not a video"):
            probe(path)
    r = run_cli("video", examples / "bird_owl.jpg", "--style", examples / "van_gogh_bridge.jpg", "--out", out)
    assert_one_error_line(r)
    assert "still image" in r.stderr and not out.exists()


def test_video_encodes_styles_once_at_any_strength(tiny_pipeline_dir, examples):
    """One forward of the generator per frame, and the style encoder twice per clip (the style, then the
    first frame's own code for strength < 1), not once per frame; with style_scale "auto", the choice adds one
    encoding and one generator pass (over a bundled photo) per candidate scale, once per style; strength 0
    returns the frames."""
    from ganmoco.pipeline import STYLE_SCALES

    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    calls = {"encoder": 0, "generator": 0}
    pipe.style_encoder.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    pipe.generator.register_forward_hook(lambda *a: calls.__setitem__("generator", calls["generator"] + 1))
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB").resize((200, 120))
    frames = [photo.crop((2 * t, 0, 2 * t + 160, 96)) for t in range(6)]
    style = examples / "van_gogh_bridge.jpg"
    list(pipe.stylize_frames(frames, style, strength=0.5, style_scale=1.0))
    assert calls == {"encoder": 2, "generator": 6}
    calls.update(encoder=0, generator=0)
    list(pipe.stylize_frames(frames, style, strength=0.5))  # the content's code is cached by now
    assert calls == {"encoder": len(STYLE_SCALES) - 1, "generator": 6 + len(STYLE_SCALES)}
    still = list(pipe.stylize_frames(frames, style, strength=0.0))
    assert len(still) == len(frames)
    assert all(
        np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1 for a, b in zip(still, frames, strict=True)
    )


def test_camera_motion_is_recovered_and_occlusions_are_found(examples):
    import torch

    from ganmoco.evaluate import motion_clip
    from ganmoco.images import load_image
    from ganmoco.motion import IDENTITY, agreement, estimate_motion, warp
    from ganmoco.pixels import to_tensor

    photo = load_image(examples / "castle_chambord.jpg")
    pan = [to_tensor(f) for f in motion_clip(photo, "pan", 2, (320, 180), 3.0)]
    theta = estimate_motion(*pan)
    assert abs(theta[0, 0, 2].item() - 3 * 2 / 320) < 1e-3 and abs(theta[0, 1, 2].item()) < 1e-3
    zoom = [to_tensor(f) for f in motion_clip(photo, "zoom", 2, (320, 180), 1.02)]
    theta = estimate_motion(*zoom)
    assert abs(theta[0, 0, 0].item() - 1 / 1.02) < 2e-3 and abs(theta[0, 1, 1].item() - 1 / 1.02) < 2e-3
    assert (warp(zoom[0], theta) - zoom[1]).abs().mean() < 0.3 * (zoom[0] - zoom[1]).abs().mean()
    assert torch.equal(estimate_motion(pan[0], pan[0]), IDENTITY)
    covered = pan[1].clone()
    covered[..., 60:120, 100:200] = 1.0  # something new in the second frame
    trust = agreement(pan[0], covered, estimate_motion(pan[0], pan[1]))
    assert trust[..., 70:110, 110:190].mean() < 0.1 and trust[..., 10:50, 20:80].mean() > 0.8


def test_keep_contrast_restores_what_a_blend_of_two_textures_flattens(examples):
    """Blending two unlike brush textures halves their detail energy; keep_contrast brings it back to the new
    frame's, leaves the coarse picture as it was, and changes nothing where nothing was lost."""
    import torch

    from ganmoco.images import load_image
    from ganmoco.motion import keep_contrast
    from ganmoco.pixels import to_tensor

    photo = to_tensor(load_image(examples / "van_gogh_starry_night.jpg").resize((192, 128)))
    other = photo.roll((5, 7), dims=(2, 3))  # the same kind of texture, not aligned with it
    blended = torch.lerp(photo, other, 0.5)

    def detail(x):
        return (x - torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)).std()

    kept = keep_contrast(blended, photo)
    assert detail(blended) < 0.8 * detail(photo)
    assert abs(detail(kept) / detail(photo) - 1) < 0.15
    coarse = torch.nn.functional.avg_pool2d
    assert (coarse(kept, 16) - coarse(blended, 16)).abs().mean() < 0.02
    assert torch.equal(keep_contrast(photo, photo), photo)
