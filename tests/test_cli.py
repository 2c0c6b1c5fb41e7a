import json
import os
import subprocess
import sys

from PIL import Image

from .conftest import assert_one_error_line, image_diff, run_cli


def test_stylize_and_fuse_write_images_of_the_content_size(tiny_pipeline_dir, examples, tmp_path):
    out = tmp_path / "out.png"
    r = run_cli(
        "stylize",
        examples / "castle_chambord.jpg",
        "--style",
        examples / "van_gogh_starry_night.jpg",
        "--style",
        examples / "van_gogh_bridge.jpg",
        "--weights",
        "0.7",
        "0.3",
        "--strength",
        "0.8",
        "--preserve-color",
        "--model",
        tiny_pipeline_dir,
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == Image.open(examples / "castle_chambord.jpg").size
    fused = tmp_path / "fused.jpg"
    r = run_cli(
        "fuse",
        examples / "exposure_dark.jpg",
        examples / "exposure_bright.jpg",
        "--task",
        "multi-exposure",
        "--model",
        tiny_pipeline_dir,
        "--out",
        fused,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(fused).size == Image.open(examples / "exposure_dark.jpg").size
    # written through a temporary file, yet with the mode any new file gets (0666 less the umask)
    mask = os.umask(0o022)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in (out, fused)} == {0o666 & ~mask}


def test_bad_input_exits_2_with_one_line_and_no_output(tiny_pipeline_dir, examples, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_text("definitely not a jpeg")
    out = tmp_path / "out.png"
    r = run_cli("stylize", bad, "--style", examples / "van_gogh_bridge.jpg", "--model", tiny_pipeline_dir, "--out", out)
    assert_one_error_line(r)
    assert "photo.jpg" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_usage_errors_exit_2(tiny_pipeline_dir, examples, tmp_path):
    assert_one_error_line(run_cli("stylize", examples / "bird_owl.jpg", "--out", tmp_path / "o.png"))  # no --style
    assert_one_error_line(
        run_cli("fuse", examples / "bird_owl.jpg", "--model", tiny_pipeline_dir, "--out", tmp_path / "o.png")
    )
    assert_one_error_line(
        run_cli(
            "stylize",
            examples / "bird_owl.jpg",
            "--style",
            examples / "van_gogh_bridge.jpg",
            "--model",
            tiny_pipeline_dir,
            "--out",
            tmp_path / "o.unknownext",
        )
    )
    assert_one_error_line(
        run_cli(
            "stylize",
            examples / "bird_owl.jpg",
            "--style",
            examples / "van_gogh_bridge.jpg",
            "--model",
            tmp_path / "no-model",
            "--out",
            tmp_path / "o.png",
        )
    )
    assert list(tmp_path.iterdir()) == []


def test_save_preset_then_stylize_with_it(tiny_pipeline_dir, examples, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, model)
    r = run_cli("save-preset", "starry", "--style", examples / "van_gogh_starry_night.jpg", "--model", model)
    assert r.returncode == 0, r.stderr
    assert (model / "presets" / "starry.safetensors").is_file()
    listed = run_cli("presets", "--model", model)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"starry\t{model / 'presets' / 'starry.safetensors'}"]
    out = tmp_path / "out.png"
    r = run_cli("stylize", examples / "bird_owl.jpg", "--preset", "starry", "--model", model, "--out", out)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == Image.open(examples / "bird_owl.jpg").size
    assert_one_error_line(
        run_cli(
            "stylize", examples / "bird_owl.jpg", "--preset", "missing", "--model", model, "--out", tmp_path / "x.png"
        )
    )
    assert not (tmp_path / "x.png").exists()


def test_help_and_input_errors_come_before_the_heavy_imports(tmp_path):
    """`ganmoco --help` and a missing input answer without importing torch or diffusers (seconds on a cold
    start): arguments and images are checked first."""
    code = (
        "import sys\n"
        "from ganmoco.cli import main\n"
        "try:\n"
        "    rc = main(sys.argv[1:])\n"
        "except SystemExit as done:\n"
        "    rc = done.code\n"
        "print('rc', rc, 'heavy', sorted({'torch', 'diffusers'} & set(sys.modules)))\n"
    )
    missing = [
        "stylize",
        str(tmp_path / "nope.jpg"),
        "--style",
        str(tmp_path / "s.jpg"),
        "--out",
        str(tmp_path / "o.png"),
    ]
    for args, rc in ((["--help"], 0), (["fuse", "--help"], 0), (missing, 2)):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert f"rc {rc} heavy []" in r.stdout, (args, r.stdout[-500:], r.stderr[-500:])
    assert "does not exist" in r.stderr and not (tmp_path / "o.png").exists()


def test_a_style_image_too_small_to_carry_a_style_is_refused(tiny_pipeline_dir, examples, tmp_path):
    out = tmp_path / "out.png"
    for size in ((1, 1), (2000, 8)):
        style = tmp_path / f"style_{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (200, 40, 40)).save(style)
        r = run_cli("stylize", examples / "bird_owl.jpg", "--style", style, "--model", tiny_pipeline_dir, "--out", out)
        assert_one_error_line(r)
        assert "at least 32 px on its shorter side" in r.stderr and f"{size[0]}x{size[1]}" in r.stderr
        assert not out.exists()


def test_transparency_is_put_on_white_with_one_warning_line(tiny_pipeline_dir, examples, tmp_path):
    content = tmp_path / "cutout.png"
    photo = Image.open(examples / "bird_owl.jpg").convert("RGBA")
    photo.paste((0, 0, 0, 0), (0, 0, 40, 40))  # a transparent corner
    photo.save(content)
    out = tmp_path / "out.png"
    r = run_cli(
        "stylize", content, "--style", examples / "van_gogh_bridge.jpg", "--model", tiny_pipeline_dir, "--out", out
    )
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [f"warning: '{content}' has transparent pixels; they are put on white"], r.stderr
    assert Image.open(out).size == photo.size


CHECKS_IN_ONE_PROCESS = """
import contextlib, io, json, sys
from ganmoco.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as done:
            rc = done.code
    results.append([rc, err.getvalue(), sorted({"torch", "diffusers"} & set(sys.modules))])
print(json.dumps(results))
"""


def test_every_argument_and_input_check_comes_before_torch(examples, tmp_path):
    """Each bad call below is refused with one `error:` line and exit 2 before torch or diffusers is imported
    (8 s and 880 MB on a cold start): the pipeline's own checks (ganmoco.options), run by the CLI first."""
    photo, style, out = str(examples / "bird_owl.jpg"), str(examples / "van_gogh_bridge.jpg"), str(tmp_path / "o.png")
    sizes = {"dot.png": (1, 1), "strip.png": (2000, 8), "square.png": (100, 100), "huge.png": (5000, 5000)}
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 120, 200)).save(tmp_path / name)
    dot, strip, square, huge = (str(tmp_path / name) for name in sizes)
    stylize = ["stylize", photo, "--style", style, "--out", out]
    cases = [
        ([*stylize, "--strength", "3"], "strength must be in [0, 1]"),
        ([*stylize, "--style-scale", "9"], "style_scale must be"),
        ([*stylize, "--paint-side", "100"], 'paint_side must be "full" or a whole number of at least 128'),
        ([*stylize, "--style", style, "--weights", "-1", "1"], "non-negative with a positive sum"),
        ([*stylize, "--style", style, "--weights", "1"], "--weights has 1 values for 2"),
        ([*stylize, "--preset", "nope"], "unknown preset 'nope'; this model has bridge"),
        ([*stylize, "--style", style, "--split-styles"], "--split-styles needs one --mask"),
        ([*stylize, "--mask", square], "the mask is 100x100 but the photo 448x299"),
        (["stylize", dot, "--style", style, "--out", out], "at least 16 px on its shorter side, got 1x1"),
        (["stylize", photo, "--style", strip, "--out", out], "at least 32 px on its shorter side to carry a style"),
        (["stylize", photo, photo, "--style", style, "--out", str(tmp_path / "d"), "--batch-size", "0"], "at least 1"),
        (["upscale", huge, "--scale", "4", "--out", out], "would give 20000x20000"),
        (["upscale", photo, "--denoise", "2", "--out", out], "a number from 0 to 1"),
        (["video", photo, "--style", style, "--out", str(tmp_path / "v.mp4")], "still image"),
        (["video", "v.mp4", "--style", style, "--consistency", "1", "--out", "o.mp4"], "consistency must be in [0, 1)"),
        (["video", "v.mp4", "--style", style, "--max-frames", "0", "--out", "o.mp4"], "at least 1"),
        (["save-preset", "bad name!", "--style", style], "a preset name uses letters"),
        (
            [
                "export-onnx",
                "--out",
                str(tmp_path / "g.onnx"),
                "--style",
                style,
                "--code-out",
                str(tmp_path / "c.npy"),
                "--weights",
                "1",
                "2",
            ],
            "--weights has 2 values for 1",
        ),
        (["convert", str(tmp_path), str(tmp_path / "new")], "not a ganmoco pipeline folder"),
        (["fuse", photo, "--out", out], "at least 2 images"),
        (["fetch-weights", "nope"], "unknown weights nope"),
        (["eval", "--contents", str(tmp_path / "none"), "--no-style", "--out", str(tmp_path / "e")], "not a file or"),
        (["eval", "--contents", photo, "--styles", style, "--out", str(tmp_path / "e")], "at least 2 images"),
    ]
    r = subprocess.run(
        [sys.executable, "-c", CHECKS_IN_ONE_PROCESS, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    for (argv, expected), (rc, stderr, heavy) in zip(cases, json.loads(r.stdout), strict=True):
        lines = stderr.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (argv, stderr)
        assert expected in lines[0], (argv, lines[0])
        assert heavy == [], (argv, heavy)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(sizes)  # nothing written


def test_a_torchvision_of_another_torch_is_named_with_the_fix(tmp_path, examples):
    """The install trap of a CPU machine (a CUDA torchvision beside a CPU torch): importing it raises torch's
    opaque "operator torchvision::nms does not exist"; ganmoco says what is wrong and how to install a pair. The
    mismatched torchvision here is a stand-in package that fails as the real one does."""
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = os.environ | {"PYTHONPATH": str(tmp_path / "site")}
    code = "import ganmoco.models"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchvision does not match torch") and "install the two as one pair" in last


def test_paint_side_on_the_command_line_is_the_pipelines(tiny_pipeline_dir, examples, tmp_path):
    """--paint-side N and "full", for one photo and for a folder, give the Python call's pictures."""
    from ganmoco import GanMocoPipeline

    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    photo, style = examples / "castle_chambord.jpg", examples / "van_gogh_bridge.jpg"
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(photo).save(folder / "castle.png")
    for side, value in (("256", 256), ("full", None)):
        out = tmp_path / f"{side}.png"
        r = run_cli(
            "stylize", photo, "--style", style, "--paint-side", side, "--model", tiny_pipeline_dir, "--out", out
        )
        assert r.returncode == 0, r.stderr
        expected = pipe.stylize(photo, style, paint_side=value)
        assert image_diff(Image.open(out), expected) == 0.0
        r = run_cli("stylize", folder, "--style", style, "--paint-side", side, "--model", tiny_pipeline_dir,
                    "--out", tmp_path / f"batch-{side}")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert image_diff(Image.open(tmp_path / f"batch-{side}" / "castle.png"), expected) <= 0.01
    assert image_diff(Image.open(tmp_path / "256.png"), Image.open(tmp_path / "full.png")) > 0.5
