"""The Gradio app: its handlers called directly, then `python app.py` driven in headless Chromium."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
        [str(examples / "bird_owl.jpg"), str(examples / "bird_duck.jpg")], "multi-focus", progress=lambda *a, **k: None
    )
    assert fused.size == Image.open(examples / "bird_owl.jpg").size
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(gr.Error, match="could not be read"):
        app_module.stylize(str(bad), str(examples / "van_gogh_bridge.jpg"), progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="at least two"):
        app_module.fuse([str(examples / "bird_owl.jpg")], progress=lambda *a, **k: None)


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir, tmp_path_factory):
    port = free_port()
    env = os.environ | {
        "GANMOCO_MODEL": str(tiny_pipeline_dir),
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
        stylized = _fetch_image(page, result)
        assert stylized.size == Image.open(content).size
        assert image_diff(stylized.convert("RGB"), Image.open(content).convert("RGB")) > 1.0

        page.get_by_role("tab", name="Fuse").click()
        files = [str(examples / "castle_chambord.jpg"), str(examples / "castle_chenonceau.jpg")]
        page.locator("#fuse-files input[type=file]").set_input_files(files)
        page.wait_for_timeout(1000)
        page.locator("#fuse-run").click()
        fused = page.locator("#fuse-out img")
        expect(fused).to_be_visible(timeout=120_000)
        page.screenshot(path=str(tmp_path / "fuse.png"), full_page=True)
        assert _fetch_image(page, fused).size == Image.open(files[0]).size

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
        [handle_file(str(examples / "bird_owl.jpg")), handle_file(str(examples / "bird_duck.jpg"))], api_name="/fuse"
    )
    assert Image.open(fused).size == Image.open(examples / "bird_owl.jpg").size
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

    from ganmoco.video import probe, write_frames

    photo = Image.open(examples / "bird_duck.jpg").convert("RGB").resize((128, 96))
    clip = write_frames([photo.rotate(t) for t in range(6)], tmp_path / "clip.mp4", Fraction(6))
    out = app_module.video(str(clip), str(examples / "van_gogh_bridge.jpg"), progress=_NoProgress())
    rate, _, size = probe(out)
    assert size == (128, 96) and rate == 6


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
