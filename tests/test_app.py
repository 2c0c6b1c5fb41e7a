"""The Gradio app: its handlers called directly, then `python app.py` driven in headless Chromium."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import free_port, image_diff

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def app_module(tiny_pipeline_dir):
    os.environ["GANMOCO_MODEL"] = str(tiny_pipeline_dir)
    try:
        spec = importlib.util.spec_from_file_location("ganmoco_app", REPO / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module._PIPE is None  # importing the app loads no model
        module.pipeline()
    finally:
        del os.environ["GANMOCO_MODEL"]
    return module


def test_handlers_called_directly(app_module, examples, tmp_path):
    import gradio as gr

    content = examples / "castle_chambord.jpg"
    out = app_module.stylize(
        str(content), str(examples / "van_gogh_starry_night.jpg"), strength=0.7, progress=lambda *a, **k: None
    )
    assert out.size == Image.open(content).size
    half = app_module.stylize(
        str(content), str(examples / "van_gogh_starry_night.jpg"), output_size="512 px", progress=lambda *a, **k: None
    )
    assert max(half.size) == min(512, max(Image.open(content).size))
    fused = app_module.fuse(
        [str(examples / "focus_near.jpg"), str(examples / "focus_far.jpg")],
        "multi-focus",
        progress=lambda *a, **k: None,
    )
    assert fused.size == Image.open(examples / "focus_near.jpg").size
    near = Image.open(examples / "focus_near.jpg").convert("RGB")
    moved = tmp_path / "moved.png"  # the far frame as a hand would have shot it
    Image.open(examples / "focus_far.jpg").convert("RGB").rotate(1.0, Image.BICUBIC, translate=(6, 4)).save(moved)
    cropped = app_module.fuse(
        [str(examples / "focus_near.jpg"), str(moved)], border="crop", progress=lambda *a, **k: None
    )
    assert cropped.width < near.width and cropped.height < near.height
    bracket = [str(examples / "exposure_dark.jpg"), str(examples / "exposure_bright.jpg")]
    plain = app_module.fuse(bracket, progress=lambda *a, **k: None)
    opened = app_module.fuse(bracket, well_exposed=True, progress=lambda *a, **k: None)
    assert opened.size == plain.size and not np.array_equal(np.asarray(opened), np.asarray(plain))
    with pytest.raises(gr.Error, match="aspect ratio"):
        app_module.fuse(
            [str(examples / "bird_owl.jpg"), str(examples / "bird_duck.jpg")], progress=lambda *a, **k: None
        )
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(gr.Error, match="could not be read"):
        app_module.stylize(str(bad), str(examples / "van_gogh_bridge.jpg"), progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="at least two"):
        app_module.fuse([str(examples / "bird_owl.jpg")], progress=lambda *a, **k: None)
    owl = Image.open(examples / "bird_owl.jpg")
    big, (before, after) = app_module.upscale(str(examples / "bird_owl.jpg"), "2", progress=lambda *a, **k: None)
    assert big.size == after.size == before.size == (2 * owl.width, 2 * owl.height)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (2100, 2000), "grey").save(huge)
    with pytest.raises(gr.Error, match="megapixels"):  # 8400 x 8000 would be 67 MP
        app_module.upscale(str(huge), "4", progress=lambda *a, **k: None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` on the bundled model, as a person starts it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GANMOCO_MODEL"} | {
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    log = tmp_path_factory.mktemp("server") / "app.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"app.py did not start: {log.read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _fetch_image(page, locator) -> Image.Image:
    src = locator.get_attribute("src")
    data = page.request.get(src).body()
    import io

    return Image.open(io.BytesIO(data))


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_app_in_a_real_browser(server, examples, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    content = examples / "castle_neuschwanstein.jpg"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server)
        page.locator("#content input[type=file]").set_input_files(str(content))
        page.locator("#style input[type=file]").set_input_files(str(examples / "van_gogh_starry_night.jpg"))
        slider = page.locator("#strength input[type=number]")
        slider.fill("0.6")
        slider.press("Enter")
        expect(page.locator("#content img")).to_be_visible(timeout=30_000)
        expect(page.locator("#style img")).to_be_visible(timeout=30_000)
        page.locator("#stylize-run").click()
        result = page.locator("#stylize-out img")
        expect(result).to_be_visible(timeout=120_000)
        page.screenshot(path=str(tmp_path / "stylize.png"), full_page=True)
        stylized_src = result.get_attribute("src")
        stylized = _fetch_image(page, result)
        assert stylized.size == Image.open(content).size
        assert image_diff(stylized.convert("RGB"), Image.open(content).convert("RGB")) > 1.0

        # paint the left part of the photo in the mask editor: only there does the style stay
        page.get_by_text("Mask: where the style goes").click()
        editor = page.locator("#mask-paint")
        canvas = editor.locator("canvas").first
        expect(canvas).to_be_visible(timeout=30_000)
        page.wait_for_timeout(2000)  # the photo is loaded into the editor's canvas
        editor.get_by_role("button", name="Brush", exact=True).click()
        box = canvas.bounding_box()
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + 0.3 * w, y0 + 0.3 * h)
        page.mouse.down()
        for i in range(12):
            y = y0 + (0.1 + 0.07 * i) * h
            page.mouse.move(x0 + 0.05 * w, y, steps=4)
            page.mouse.move(x0 + 0.45 * w, y, steps=8)
            page.wait_for_timeout(30)
        page.mouse.up()
        page.wait_for_timeout(500)
        page.locator("#stylize-run").click()
        expect(result).not_to_have_attribute("src", stylized_src, timeout=120_000)
        page.screenshot(path=str(tmp_path / "painted-mask.png"), full_page=True)
        masked = np.asarray(_fetch_image(page, result).convert("RGB"), dtype=float)
        change = np.abs(masked - np.asarray(stylized.convert("RGB"), dtype=float)).mean((0, 2))
        width = masked.shape[1]
        # the canvas shows the photo centred: its left tenth is painted over, its right third is not
        assert change[: width // 10].mean() * 3 < change[-width // 3 :].mean()

        page.get_by_role("tab", name="Fuse").click()
        files = [str(examples / "castle_chambord.jpg"), str(examples / "castle_chenonceau.jpg")]
        page.locator("#fuse-files input[type=file]").set_input_files(files)
        page.locator("#fuse-well-exposed input").check()
        page.wait_for_timeout(1000)
        page.locator("#fuse-run").click()
        fused = page.locator("#fuse-out img")
        expect(fused).to_be_visible(timeout=120_000)
        page.screenshot(path=str(tmp_path / "fuse.png"), full_page=True)
        assert _fetch_image(page, fused).size == Image.open(files[0]).size
        # an example stack loads and fuses at one click
        fused_src = fused.get_attribute("src")
        page.get_by_text("focus stack", exact=True).click()
        expect(fused).not_to_have_attribute("src", fused_src, timeout=120_000)
        page.screenshot(path=str(tmp_path / "fuse-example.png"), full_page=True)
        assert _fetch_image(page, fused).size == Image.open(examples / "focus_near.jpg").size

        # the Video tab's example loads a clip and a style; one click stylizes it
        page.get_by_role("tab", name="Video").click()
        page.get_by_text("a pan across a castle, Starry Night", exact=True).click()
        expect(page.locator("#video-in video")).to_be_visible(timeout=30_000)
        page.locator("#video-run").click()
        expect(page.locator("#video-out video")).to_be_visible(timeout=180_000)
        page.screenshot(path=str(tmp_path / "video.png"), full_page=True)

        # Upscale: x4 of an example at one click, the result exactly 4x the photo
        page.get_by_role("tab", name="Upscale").click()
        page.get_by_text("a castle, x4", exact=True).click()
        expect(page.locator("#upscale-in img")).to_be_visible(timeout=30_000)
        page.locator("#upscale-run").click()
        upscaled = page.locator("#upscale-out img")
        expect(upscaled).to_be_visible(timeout=120_000)
        expect(page.locator("#upscale-compare img").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(tmp_path / "upscale.png"), full_page=True)
        castle = Image.open(examples / "castle_chambord.jpg")
        assert _fetch_image(page, upscaled).size == (4 * castle.width, 4 * castle.height)

        page.reload()
        page.get_by_role("tab", name="Fuse").click()
        page.locator("#fuse-files input[type=file]").set_input_files([str(corrupt), files[0]])
        page.wait_for_timeout(1000)
        page.locator("#fuse-run").click()
        expect(page.get_by_text("could not be read").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        browser.close()


def test_gradio_client_calls_each_endpoint(server, examples, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    out = client.predict(
        handle_file(str(examples / "bird_owl.jpg")),
        handle_file(str(examples / "van_gogh_bridge.jpg")),
        api_name="/stylize",
    )
    assert Image.open(out).size == Image.open(examples / "bird_owl.jpg").size
    fused = client.predict(
        [handle_file(str(examples / "exposure_dark.jpg")), handle_file(str(examples / "exposure_bright.jpg"))],
        api_name="/fuse",
    )
    assert Image.open(fused).size == Image.open(examples / "exposure_dark.jpg").size
    upscaled, _ = client.predict(handle_file(str(examples / "bird_duck.jpg")), "2", api_name="/upscale")
    duck = Image.open(examples / "bird_duck.jpg")
    assert Image.open(upscaled).size == (2 * duck.width, 2 * duck.height)
    from fractions import Fraction

    from ganmoco.video import probe, write_frames

    photo = Image.open(examples / "bird_duck.jpg").convert("RGB").resize((96, 64))
    clip = write_frames([photo.rotate(t) for t in range(4)], tmp_path / "clip.mp4", Fraction(4))
    styled = client.predict(
        handle_file(str(clip)), handle_file(str(examples / "van_gogh_bridge.jpg")), api_name="/video"
    )
    path = styled["video"] if isinstance(styled, dict) else styled
    assert probe(path)[2] == (96, 64)


def test_video_handler(app_module, examples, tmp_path):
    from fractions import Fraction

    import gradio as gr

    from ganmoco.video import probe, write_frames

    photo = Image.open(examples / "bird_duck.jpg").convert("RGB").resize((128, 96))
    clip = write_frames([photo.rotate(t) for t in range(6)], tmp_path / "clip.mp4", Fraction(6))
    out = app_module.video(str(clip), str(examples / "van_gogh_bridge.jpg"), progress=_NoProgress())
    rate, _, size = probe(out)
    assert size == (128, 96) and rate == 6
    larger = app_module.video(
        str(clip), str(examples / "van_gogh_bridge.jpg"), stroke_scale="2", progress=_NoProgress()
    )
    assert probe(larger)[2] == (128, 96)
    with pytest.raises(gr.Error, match="style_scale must be"):
        app_module.video(str(clip), str(examples / "van_gogh_bridge.jpg"), stroke_scale="big", progress=_NoProgress())


class _NoProgress:
    def __call__(self, *args, **kwargs):
        pass

    def tqdm(self, iterable, **kwargs):
        return iterable


def test_video_time_limit(app_module, examples, tmp_path, monkeypatch):
    from fractions import Fraction

    import gradio as gr

    from ganmoco.video import write_frames

    photo = Image.open(examples / "bird_duck.jpg").convert("RGB").resize((64, 48))
    clip = write_frames([photo] * 4, tmp_path / "clip.mp4", Fraction(4))
    monkeypatch.setattr(app_module, "MAX_VIDEO_SECONDS", -1)
    with pytest.raises(gr.Error, match="longer than"):
        app_module.video(str(clip), str(examples / "van_gogh_bridge.jpg"), progress=_NoProgress())


def _no_progress(*args, **kwargs):
    return None


def test_more_styles_with_weights_and_a_painted_mask(app_module, examples, monkeypatch):
    # the bundled (trained) model: an untrained generator ignores its style code
    monkeypatch.setattr(app_module, "_PIPE", app_module.GanMocoPipeline.from_pretrained())
    content, (s1, s2, s3) = (
        examples / "castle_chambord.jpg",
        (examples / f"van_gogh_{n}.jpg" for n in ("bridge", "starry_night", "night_cafe")),
    )
    photo = Image.open(content).convert("RGB")
    one = app_module.stylize(str(content), str(s1), progress=_no_progress)
    larger = app_module.stylize(str(content), str(s1), stroke_scale="2", progress=_no_progress)  # larger strokes
    assert larger.size == one.size and image_diff(larger, one) > 2.0
    # brush size relative to the picture: the photo (over 256 px) laid out at 256 px has larger strokes
    broad = app_module.stylize(str(content), str(s1), brush="large", progress=_no_progress)
    assert broad.size == one.size and image_diff(broad, one) > 2.0
    with pytest.raises(app_module.gr.Error, match="Brush size must be one of"):
        app_module.stylize(str(content), str(s1), brush="huge", progress=_no_progress)
    three = app_module.stylize(
        str(content),
        str(s1),
        style2=str(s2),
        style2_weight=0.5,
        style3=str(s3),
        style3_weight=1.0,
        progress=_no_progress,
    )
    assert three.size == one.size and image_diff(three, one) > 0.5
    # the weights count: all the weight on style 3 is style 3 alone
    only3 = app_module.stylize(
        str(content), str(s1), style_weight=0.0, style3=str(s3), style3_weight=1.0, progress=_no_progress
    )
    assert image_diff(only3, app_module.stylize(str(content), str(s3), progress=_no_progress)) < 0.5

    # strokes painted on the left half of the editor's canvas (an RGBA layer, as gr.ImageEditor sends it)
    w, h = photo.size
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    layer.paste((255, 51, 102, 255), (0, 0, w // 2, h))
    editor = {"background": photo, "layers": [layer], "composite": photo}
    masked = np.asarray(app_module.stylize(str(content), str(s1), painted=editor, progress=_no_progress), dtype=float)
    full1 = np.asarray(one, dtype=float)
    unstyled = np.asarray(app_module.stylize(str(content), str(s1), strength=0.0, progress=_no_progress), dtype=float)
    left, right = slice(0, w // 4), slice(3 * w // 4, w)
    assert np.abs(masked[:, left] - full1[:, left]).mean() < 0.5 * np.abs(masked[:, left] - unstyled[:, left]).mean()
    assert (
        np.abs(masked[:, right] - unstyled[:, right]).mean() < 0.5 * np.abs(masked[:, right] - full1[:, right]).mean()
    )
    # split: style 1 inside the painted region, style 2 outside
    split = np.asarray(
        app_module.stylize(
            str(content), str(s1), painted=editor, split_styles=True, style2=str(s2), progress=_no_progress
        ),
        dtype=float,
    )
    full2 = np.asarray(app_module.stylize(str(content), str(s2), progress=_no_progress), dtype=float)
    assert np.abs(split[:, left] - full1[:, left]).mean() < np.abs(split[:, left] - full2[:, left]).mean()
    assert np.abs(split[:, right] - full2[:, right]).mean() < np.abs(split[:, right] - full1[:, right]).mean()
    # an empty canvas is no mask
    assert app_module._painted_mask({"background": photo, "layers": [Image.new("RGBA", photo.size)]}) is None


def test_a_hub_id_that_cannot_be_reached_falls_back_to_the_bundled_model(app_module, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GANMOCO_MODEL", "ganmoco/not-downloaded-here")
    pipe = app_module.load_pipeline()
    assert "using the bundled default model" in capsys.readouterr().out
    assert pipe.generator.config == app_module.GanMocoPipeline.from_pretrained().generator.config
    monkeypatch.setenv("GANMOCO_MODEL", str(Path(__file__)))  # a local path that is not a model: its own error
    with pytest.raises(app_module.ModelLoadError):
        app_module.load_pipeline()
