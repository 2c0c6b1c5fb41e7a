"""ganmoco demo: arbitrary style transfer, image fusion and upscaling in the browser (`python app.py`).

UI only: every computation is a GanMocoPipeline call.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import gradio as gr
from PIL import Image, ImageChops

from ganmoco import GanMocoPipeline, ImageError, ModelLoadError
from ganmoco.images import load_image
from ganmoco.pixels import fit_within

EXAMPLES = Path(__file__).resolve().parent / "ganmoco" / "assets" / "examples"
MAX_OUTPUT_PIXELS = 16_000_000  # a 4K frame is 8.3 MP; more is refused with a message, not an OOM
MAX_VIDEO_FRAMES = 300
MAX_VIDEO_SECONDS = 300  # a per-request time limit; stylize and fuse are bounded by MAX_OUTPUT_PIXELS
NO_PRESET = "none (use the style image)"
OUTPUT_SIZES = {"original": None, "1024 px": 1024, "512 px": 512}
# brush size relative to the picture -> the pipeline's paint_side (the longer side the painting is laid out at)
BRUSH_SIZES = {"large": 256, "medium": 512, "fine": 1024, "fixed in pixels (one pass)": "full"}
# (label, value): the values are the task names of pipe.fuse and `ganmoco fuse --task`
FUSION_MODES = [
    ("general: any stack", "general"),
    ("multi-focus", "multi-focus"),
    ("multi-exposure", "multi-exposure"),
    ("infrared-visible (untrained: no real pairs to learn from)", "infrared-visible"),
]

MAX_STYLES = 4  # style slots in the Stylize tab, each with its own weight


def load_pipeline() -> GanMocoPipeline:
    """The model, loaded once at start: GANMOCO_MODEL names a folder or a Hub repo id (on a Space, set it as a
    variable); without it, or when the Hub cannot be reached (offline), the bundled default model."""
    name = os.environ.get("GANMOCO_MODEL")
    if not name:
        return GanMocoPipeline.from_pretrained()
    try:
        return GanMocoPipeline.from_pretrained(name)
    except ModelLoadError as err:
        if Path(name).exists():
            raise  # a local folder: its errors are the user's to see
        print(f"ganmoco: could not load {name!r} from the Hub ({err}); using the bundled default model", flush=True)
        return GanMocoPipeline.from_pretrained()


_PIPE: GanMocoPipeline | None = None
_PIPE_LOCK = threading.Lock()


def pipeline() -> GanMocoPipeline:
    """The served model, loaded on first use (`main` loads it before the server starts), not at import."""
    global _PIPE
    with _PIPE_LOCK:
        if _PIPE is None:
            _PIPE = load_pipeline()
        return _PIPE


def _image(value, what: str):
    if value is None:
        raise gr.Error(f"Please add {what}.")
    try:
        return load_image(value)
    except ImageError as err:
        raise gr.Error(f"The {what} could not be read: {err}.") from None


def _check_size(image, max_side):
    image = fit_within(image, max_side)
    if image.width * image.height > MAX_OUTPUT_PIXELS:
        raise gr.Error(
            f"The image is {image.width}x{image.height}; choose a smaller output size "
            f"(at most {MAX_OUTPUT_PIXELS // 1_000_000} megapixels)."
        )
    return image


def _painted_mask(editor):
    """The strokes painted in the mask editor as an L mask (painted = 255), or None when nothing is painted."""
    layers = (editor or {}).get("layers") or []
    alphas = [layer.convert("RGBA").getchannel("A") for layer in layers if layer is not None]
    if not alphas or not any(a.getbbox() for a in alphas):
        return None
    mask = alphas[0]
    for alpha in alphas[1:]:
        mask = ImageChops.lighter(mask, alpha)
    return mask.point(lambda v: 255 if v > 0 else 0)


def stylize(
    content,
    style,
    strength=1.0,
    preserve_color=False,
    mask=None,
    output_size="original",
    preset=NO_PRESET,
    painted=None,
    split_styles=False,
    style_weight=1.0,
    style2=None,
    style2_weight=1.0,
    style3=None,
    style3_weight=1.0,
    style4=None,
    style4_weight=1.0,
    stroke_scale="auto",
    brush="medium",
    progress=gr.Progress(),
):
    progress(0.1, desc="reading images")
    if brush not in BRUSH_SIZES:
        raise gr.Error(f"Brush size must be one of {', '.join(BRUSH_SIZES)}, got {brush!r}.")
    content = _check_size(_image(content, "content photo"), OUTPUT_SIZES.get(output_size))
    if preset and preset != NO_PRESET:  # a filter preset stands in for the first style image
        try:
            first = pipeline().preset(preset)
        except ValueError as err:
            raise gr.Error(str(err)) from None
    else:
        first = _image(style, "style image (or choose a filter preset)")
    styles, weights = [first], [float(style_weight)]
    for i, (extra, weight) in enumerate(((style2, style2_weight), (style3, style3_weight), (style4, style4_weight))):
        if extra is not None:
            styles.append(_image(extra, f"style image {i + 2}"))
            weights.append(float(weight))
    region = _painted_mask(painted)
    if region is not None:  # painted over the full-size photo: scale to the output
        region = region.resize(content.size, Image.BILINEAR)
    elif mask is not None:
        region = _image(mask, "mask").convert("L")
    scale = stroke_scale or "auto"  # "auto" or a number as text: the pipeline checks it
    progress(0.3, desc="stylizing")
    try:
        return pipeline().stylize(
            content,
            styles,
            weights=weights,
            strength=float(strength),
            preserve_color=bool(preserve_color),
            mask=region,
            style_scale=scale,
            split_styles=bool(split_styles) and region is not None and len(styles) > 1,
            paint_side=BRUSH_SIZES[brush],
        )
    except (ImageError, ValueError) as err:
        raise gr.Error(str(err)) from None


def _editor_canvas(content):
    if content is None:
        return None
    try:
        photo = load_image(content)
    except ImageError:
        return None  # the Stylize button reports unreadable photos
    return {"background": photo, "layers": [], "composite": photo}


def fuse(files, mode="general", output_size="original", border="fill", well_exposed=False, progress=gr.Progress()):
    paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
    if len(paths) < 2:
        raise gr.Error("Please add at least two images of the same scene.")
    progress(0.1, desc="reading images")
    images = [_check_size(_image(p, f"image {i + 1}"), OUTPUT_SIZES.get(output_size)) for i, p in enumerate(paths)]
    progress(0.3, desc="fusing")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fused = pipeline().fuse(images, task=mode, border=border, well_exposed=well_exposed)
    except (ImageError, ValueError) as err:
        raise gr.Error(str(err)) from None
    for warning in caught:  # e.g. a frame resized to the first one's size: said in the page, not only the log
        gr.Warning(str(warning.message))
    return fused


def video(clip, style, strength=1.0, preserve_color=False, stroke_scale="auto", progress=gr.Progress()):
    if clip is None:
        raise gr.Error("Please add a video clip.")
    style_image = _image(style, "style image")
    out = Path(tempfile.mkdtemp(prefix="ganmoco-video-")) / "stylized.mp4"
    try:
        return str(
            pipeline().stylize_video(
                clip,
                style_image,
                out,
                max_frames=MAX_VIDEO_FRAMES,
                strength=float(strength),
                preserve_color=bool(preserve_color),
                style_scale=stroke_scale or "auto",
                progress=lambda frames, total: progress.tqdm(
                    _within(frames, MAX_VIDEO_SECONDS), total=total, desc="stylizing frames"
                ),
            )
        )
    except (ImageError, ValueError) as err:  # VideoError is a ValueError
        shutil.rmtree(out.parent, ignore_errors=True)
        raise gr.Error(str(err)) from None
    except TimeoutError:
        shutil.rmtree(out.parent, ignore_errors=True)
        raise gr.Error(
            f"The clip takes longer than {MAX_VIDEO_SECONDS} s to stylize here; try a shorter or smaller clip."
        ) from None


def upscale(image, scale="4", mode="sharpen", progress=gr.Progress()):
    """The upscaled image, and (bicubic, upscaled) for the before/after slider. `mode`: "sharpen", or "clean up
    JPEG and noise" (the upscaler's denoise strength 1)."""
    photo = _image(image, "an image")
    factor = int(scale)
    width, height = photo.width * factor, photo.height * factor
    if width * height > MAX_OUTPUT_PIXELS:
        raise gr.Error(
            f"Upscaled x{factor}, the {photo.width}x{photo.height} image would be {width}x{height}, more than "
            f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels; choose x2 or a smaller image."
        )
    progress(0.2, desc=f"upscaling x{factor}")
    try:
        result = pipeline().upscale(photo, scale=factor, denoise=1.0 if mode.startswith("clean") else 0.0)
    except (ImageError, ValueError) as err:
        raise gr.Error(str(err)) from None
    return result, (photo.resize(result.size, Image.BICUBIC), result)


def _within(frames, seconds: float):
    """Pass frames through until `seconds` have gone by, then stop the request (no partial file is kept)."""
    deadline = time.monotonic() + seconds
    for frame in frames:
        if time.monotonic() > deadline:
            raise TimeoutError
        yield frame


def _stroke_scale_radio(elem_id: str) -> gr.Radio:
    return gr.Radio(
        ["auto", "1", "1.5", "2"],
        value="auto",
        label="Stroke scale: how large strokes and patterns are painted (auto: chosen per style)",
        elem_id=elem_id,
    )


def build_demo(presets: list[str]) -> gr.Blocks:
    # uploads and results older than an hour are deleted, checked hourly
    with gr.Blocks(title="ganmoco: style transfer and image fusion", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# ganmoco\nArbitrary style transfer and multi-image fusion with one GAN-MoCo generator.")
        with gr.Tab("Stylize"):
            with gr.Row():
                with gr.Column():
                    content = gr.Image(
                        label="Content photo", type="filepath", sources=["upload", "clipboard"], elem_id="content"
                    )
                    with gr.Row():
                        style = gr.Image(
                            label="Style", type="filepath", sources=["upload", "clipboard"], elem_id="style"
                        )
                        with gr.Column():
                            preset = gr.Dropdown(
                                [NO_PRESET, *presets], value=NO_PRESET, label="Filter preset (a saved style)"
                            )
                            style_weight = gr.Slider(0, 1, value=1.0, step=0.05, label="Weight of style 1")
                    with gr.Accordion("Blend more styles", open=False):
                        extra = []
                        for i in range(2, MAX_STYLES + 1):
                            with gr.Row():
                                extra.append(
                                    gr.Image(
                                        label=f"Style {i}",
                                        type="filepath",
                                        sources=["upload", "clipboard"],
                                        elem_id=f"style{i}",
                                    )
                                )
                                extra.append(gr.Slider(0, 1, value=1.0, step=0.05, label=f"Weight of style {i}"))
                    strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength", elem_id="strength")
                    preserve = gr.Checkbox(label="Preserve the photo's colours")
                    stroke = _stroke_scale_radio("stroke-scale")
                    brush = gr.Radio(
                        list(BRUSH_SIZES),
                        value="medium",
                        label="Brush size, relative to the picture (the same painting at any photo size)",
                        elem_id="brush-size",
                    )
                    with gr.Accordion("Mask: where the style goes", open=False):
                        painted = gr.ImageEditor(
                            label="Paint over the photo where the style goes",
                            type="pil",
                            sources=[],
                            layers=False,
                            transforms=[],
                            brush=gr.Brush(colors=["#ff3366"], color_mode="fixed", default_size=40),
                            elem_id="mask-paint",
                        )
                        mask = gr.Image(
                            label="...or upload a mask (white = stylized)",
                            type="filepath",
                            sources=["upload"],
                            image_mode="L",
                        )
                        split = gr.Checkbox(
                            label="Style 1 inside the mask, the other styles outside", elem_id="split-styles"
                        )
                    size = gr.Radio(list(OUTPUT_SIZES), value="original", label="Output size")
                    run = gr.Button("Stylize", variant="primary", elem_id="stylize-run")
                with gr.Column():
                    out = gr.Image(label="Result", type="pil", format="png", elem_id="stylize-out")
            gr.Examples(
                examples=[
                    [str(EXAMPLES / "castle_chambord.jpg"), str(EXAMPLES / "van_gogh_starry_night.jpg")],
                    [str(EXAMPLES / "bird_owl.jpg"), str(EXAMPLES / "van_gogh_night_cafe.jpg")],
                    [str(EXAMPLES / "castle_neuschwanstein.jpg"), str(EXAMPLES / "van_gogh_bridge.jpg")],
                ],
                inputs=[content, style],
                label="Try an example",
            )
            # the photo becomes the mask editor's canvas, so the mask is painted over what it selects
            content.change(_editor_canvas, content, painted)
            run.click(
                stylize,
                [
                    content,
                    style,
                    strength,
                    preserve,
                    mask,
                    size,
                    preset,
                    painted,
                    split,
                    style_weight,
                    *extra,
                    stroke,
                    brush,
                ],
                out,
                api_name="stylize",
            )
        with gr.Tab("Fuse"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(
                        label="Two or more images of one scene",
                        file_count="multiple",
                        file_types=["image"],
                        elem_id="fuse-files",
                    )
                    mode = gr.Radio(FUSION_MODES, value="general", label="Mode")
                    fsize = gr.Radio(list(OUTPUT_SIZES), value="original", label="Output size")
                    fborder = gr.Radio(
                        [("keep the first image's size", "fill"), ("crop to what every frame covers", "crop")],
                        value="fill",
                        label="Edges (frames shot by hand are aligned onto the first)",
                    )
                    fexposed = gr.Checkbox(
                        value=False,
                        label="Bright and open (favour each region's best exposed frame: real brackets of 3+ shots)",
                        elem_id="fuse-well-exposed",
                    )
                    frun = gr.Button("Fuse", variant="primary", elem_id="fuse-run")
                with gr.Column():
                    fout = gr.Image(label="Fused", type="pil", format="png", elem_id="fuse-out")
            frun.click(fuse, [files, mode, fsize, fborder, fexposed], fout, api_name="fuse")
            gr.Examples(  # made from the example photos, see ganmoco/assets/examples/LICENSES.md
                examples=[
                    [[str(EXAMPLES / "focus_near.jpg"), str(EXAMPLES / "focus_far.jpg")], "general"],
                    [[str(EXAMPLES / "exposure_dark.jpg"), str(EXAMPLES / "exposure_bright.jpg")], "general"],
                ],
                inputs=[files, mode],
                outputs=fout,
                fn=fuse,
                run_on_click=True,
                cache_examples=False,
                example_labels=["focus stack", "exposure bracket"],
            )
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(
                        label=f"Clip (the first {MAX_VIDEO_FRAMES} frames are stylized)",
                        sources=["upload"],
                        elem_id="video-in",
                    )
                    vstyle = gr.Image(
                        label="Style", type="filepath", sources=["upload", "clipboard"], elem_id="video-style"
                    )
                    vstrength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength")
                    vpreserve = gr.Checkbox(label="Preserve the clip's colours")
                    vstroke = _stroke_scale_radio("video-stroke-scale")
                    vrun = gr.Button("Stylize video", variant="primary", elem_id="video-run")
                with gr.Column():
                    vout = gr.Video(label="Stylized clip", elem_id="video-out")
            gr.Examples(  # a pan across one of the example photos
                examples=[[str(EXAMPLES / "pan_castle.mp4"), str(EXAMPLES / "van_gogh_starry_night.jpg")]],
                inputs=[clip, vstyle],
                example_labels=["a pan across a castle, Starry Night"],
            )
            vrun.click(video, [clip, vstyle, vstrength, vpreserve, vstroke], vout, api_name="video")
        with gr.Tab("Upscale"):
            with gr.Row():
                with gr.Column():
                    uin = gr.Image(
                        label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="upscale-in"
                    )
                    uscale = gr.Radio(["2", "4"], value="4", label="Scale (x)", elem_id="upscale-scale")
                    umode = gr.Radio(
                        ["sharpen", "clean up JPEG and noise"], value="sharpen", label="Mode", elem_id="upscale-mode"
                    )
                    urun = gr.Button("Upscale", variant="primary", elem_id="upscale-run")
                with gr.Column():
                    ucompare = gr.ImageSlider(
                        label="Bicubic | ganmoco (drag to compare)", type="pil", format="png", elem_id="upscale-compare"
                    )
                    uout = gr.Image(label="Upscaled", type="pil", format="png", elem_id="upscale-out")
            urun.click(upscale, [uin, uscale, umode], [uout, ucompare], api_name="upscale")
            gr.Examples(
                examples=[[str(EXAMPLES / "bird_owl.jpg"), "2"], [str(EXAMPLES / "castle_chambord.jpg"), "4"]],
                inputs=[uin, uscale],
                example_labels=["an owl, x2", "a castle, x4"],
            )
    return demo


def main() -> None:
    demo = build_demo(list(pipeline().presets))
    demo.queue(max_size=16, default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size="25mb",
    )


if __name__ == "__main__":
    main()
