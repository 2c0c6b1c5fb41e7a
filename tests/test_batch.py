"""Whole folders through one model load (`ganmoco stylize|upscale|fuse` with several inputs): relative names,
skipping finished outputs, one bad file failing alone, accelerate's split across processes, resuming after a
kill -9."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ganmoco import GanMocoPipeline
from ganmoco.cli import main

from .conftest import EXAMPLES, free_port


def _album(root, names, size=(48, 36)):
    """Small real photos under `root` at the relative `names` (nested folders included)."""
    photos = sorted(EXAMPLES.glob("*.jpg"))
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(photos[i % len(photos)]).convert("RGB").resize(size).save(path)
    return root


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_stylize_a_folder_keeps_names_skips_finished_and_fails_one_bad_file_alone(tiny_pipeline_dir, tmp_path, capsys):
    album = _album(tmp_path / "album", ["a.jpg", "b.png", "trip/c.jpg", "trip/deeper/d.jpg", "e.jpg"])
    (album / "trip" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    Image.open(album / "e.jpg").resize((30, 40)).save(album / "e.jpg")  # another size: its own forward
    style = EXAMPLES / "van_gogh_starry_night.jpg"
    out = tmp_path / "out"
    args = ["stylize", album, "--style", style, "--model", tiny_pipeline_dir, "--out", out, "--batch-size", "3"]
    code, stdout, stderr = _cli(capsys, *args)
    assert code == 2  # one input failed; the others are written
    assert "5 images written, 0 already done, 1 failed" in stdout
    lines = stderr.replace("\r", "\n").splitlines()  # the progress bar redraws with carriage returns
    assert sum("broken.jpg" in line and line.startswith("error:") for line in lines) == 1
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.jpg", "b.png", "e.jpg", "trip/c.jpg", "trip/deeper/d.jpg"]
    # each as the one-image call gives it (batched forwards: within a level, then the JPEG's own rounding)
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    alone = pipe.stylize(Image.open(album / "b.png"), Image.open(style))
    assert np.abs(_pixels(out / "b.png") - np.asarray(alone, dtype=np.int16)).max() <= 1
    assert Image.open(out / "e.jpg").size == (30, 40)

    # a rerun skips what is there; --overwrite redoes it
    stamp = (out / "a.jpg").stat().st_mtime_ns
    code, stdout, _ = _cli(capsys, *args)
    assert "0 images written, 5 already done, 1 failed" in stdout and code == 2
    assert (out / "a.jpg").stat().st_mtime_ns == stamp
    (album / "trip" / "broken.jpg").unlink()
    code, stdout, _ = _cli(capsys, *args, "--overwrite")
    assert code == 0 and "5 images written, 0 already done, 0 failed" in stdout


def test_upscale_files_and_folders_with_another_format(tiny_pipeline_dir, tmp_path, capsys):
    album = _album(tmp_path / "in", ["x.jpg", "y.jpg", "more/z.jpg"])
    out = tmp_path / "up"
    code, stdout, _ = _cli(
        capsys, "upscale", album / "x.jpg", album / "more", "--scale", "4", "--format", "png",
        "--model", tiny_pipeline_dir, "--out", out,
    )  # fmt: skip
    assert code == 0 and "2 images written" in stdout
    assert sorted(p.name for p in out.rglob("*.png")) == ["x.png", "z.png"]
    assert Image.open(out / "z.png").size == (4 * 48, 4 * 36)
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    alone = pipe.upscale(Image.open(album / "x.jpg"), scale=4)
    assert np.array_equal(_pixels(out / "x.png"), np.asarray(alone, dtype=np.int16))


def test_fuse_a_folder_of_stacks(tiny_pipeline_dir, tmp_path, capsys):
    photo = Image.open(EXAMPLES / "castle_chambord.jpg").convert("RGB").resize((96, 64))
    stacks = tmp_path / "stacks"
    for name, shift in (("hall", 0), ("tower", 3)):
        (stacks / name).mkdir(parents=True)
        photo.save(stacks / name / "1.png")
        photo.rotate(0, translate=(shift, 1)).save(stacks / name / "2.png")
    (stacks / "single").mkdir()
    photo.save(stacks / "single" / "only.png")  # one frame is not a stack: left alone
    out = tmp_path / "fused"
    code, stdout, _ = _cli(capsys, "fuse", stacks, "--model", tiny_pipeline_dir, "--out", out, "--format", "png")
    assert code == 0 and "2 stacks written" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["hall.png", "tower.png"]
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    alone = pipe.fuse([stacks / "tower" / "1.png", stacks / "tower" / "2.png"])
    assert np.array_equal(_pixels(out / "tower.png"), np.asarray(alone, dtype=np.int16))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mask", "MASK"], "--mask (and --split-styles) fits one content image"),
        (["--split-styles"], "--mask (and --split-styles) fits one content image"),
        (["--batch-size", "0"], "--batch-size: expected a whole number of at least 1"),
        (["--format", "xyz"], "--format 'xyz'"),
    ],
)
def test_batch_usage_errors_come_before_the_model(tmp_path, capsys, extra, message):
    album = _album(tmp_path / "album", ["a.jpg", "b.jpg"])
    extra = [str(album / "a.jpg") if e == "MASK" else e for e in extra]
    code, _, err = _cli(
        capsys, "stylize", album, "--style", EXAMPLES / "van_gogh_starry_night.jpg", "--model", tmp_path / "no-model",
        "--out", tmp_path / "out", *extra,
    )  # fmt: skip
    assert code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_batch_input_errors(tmp_path, capsys):
    one, two = _album(tmp_path / "one", ["a.jpg"]), _album(tmp_path / "two", ["a.jpg"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    for args, message in (
        ([one / "a.jpg", two / "a.jpg", "--out", tmp_path / "o"], "would both be written to"),
        ([tmp_path / "empty", one, "--out", tmp_path / "o"], "no images under the folder"),
        ([one, two, "--out", tmp_path / "file.png"], "--out must be a folder"),
    ):
        code, _, err = _cli(capsys, "upscale", *args, "--model", tmp_path / "no-model")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = _cli(capsys, "fuse", one, "--out", tmp_path / "o", "--model", tmp_path / "no-model")
    assert code == 2 and "no stacks in" in err


def _launch(*args, processes: int, script=None):
    """`accelerate launch -m ganmoco ARGS` (or `SCRIPT ARGS`) on the CPU as a real process group."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1"]
    if processes > 1:
        # a free port: the default one may still be held by an earlier process group of this run
        command += ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(free_port())]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [str(script)] if script else ["-m", "ganmoco"]
    command += map(str, args)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_write_every_output_once_as_one_process_does(tiny_pipeline_dir, tmp_path):
    album = _album(tmp_path / "album", [f"{i:02d}.jpg" for i in range(10)] + ["sub/x.png"], size=(64, 48))
    common = ["--scale", "2", "--format", "png", "--model", tiny_pipeline_dir, "--batch-size", "3"]
    one = _launch("upscale", album, "--out", tmp_path / "one", *common, processes=1)
    assert one.returncode == 0, one.stderr
    two = _launch("upscale", album, "--out", tmp_path / "two", *common, processes=2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("11 images written, 0 already done, 0 failed") == 1  # one summary, of all processes
    # accelerate split the 4 batches of 3 between the processes: 6 + 5, each input once
    shares = sorted(re.findall(r"process (\d)/2: (\d+) images written, 0 already done", two.stderr))
    assert [index for index, _ in shares] == ["1", "2"], two.stderr[-2000:]
    assert sorted(int(count) for _, count in shares) == [5, 6]
    names = sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert len(names) == 11
    for name in names:
        assert np.array_equal(_pixels(tmp_path / "one" / name), _pixels(tmp_path / "two" / name)), name


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process's threads from /proc")
def test_a_process_group_run_ends_its_group_before_the_interpreter_exits(tiny_pipeline_dir, tmp_path):
    # gloo's threads left running into the interpreter's exit abort the process there, now and then (SIGABRT)
    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys\n"
        "from ganmoco.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')]\n"
        # a file per rank: the two processes' stderr writes interleave mid-line
        f"path = os.path.join({str(tmp_path)!r}, 'gloo-' + os.environ['RANK'])\n"
        "open(path, 'w').write(str(sum('gloo' in name for name in names)))\n"
        "sys.exit(code)\n"
    )
    album = _album(tmp_path / "album", ["a.jpg", "b.jpg", "c.jpg"])
    run = _launch(
        "upscale", album, "--out", tmp_path / "out", "--scale", "2", "--batch-size", "1", "--model", tiny_pipeline_dir,
        processes=2, script=script,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert [(tmp_path / f"gloo-{rank}").read_text() for rank in (0, 1)] == ["0", "0"]


def test_a_killed_run_resumes_with_only_what_was_missing(tiny_pipeline_dir, tmp_path):
    album = _album(tmp_path / "album", [f"{i:02d}.jpg" for i in range(24)], size=(160, 120))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ganmoco", "upscale", str(album), "--scale", "2", "--format", "png"]
    command += ["--model", str(tiny_pipeline_dir), "--out", str(out), "--batch-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def outputs():  # not the hidden temporary file being written
        return sorted(p.name for p in out.glob("[!.]*.png"))

    deadline = time.monotonic() + 240
    while len(outputs()) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = outputs()
    assert 3 <= len(finished) < 24, "the run ended before it could be killed in the middle"
    for name in finished:
        Image.open(out / name).load()  # every output there is whole
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{24 - len(finished)} images written, {len(finished)} already done, 0 failed" in rerun.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}.png" for i in range(24)]  # no temporary files left
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    shutil.rmtree(album)
