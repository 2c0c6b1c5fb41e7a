import json
import subprocess
import sys


def test_bench_json_follows_the_contract(tmp_path):
    plot = tmp_path / "bench.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ganmoco.bench",
            "--json",
            "--sizes",
            "64",
            "--repeats",
            "1",
            "--tasks",
            "stylize",
            "fuse",
            "ref-johnson",
            "fuse-aligned",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert isinstance(report["machine"], str) and report["machine"]
    tasks = [(x["task"], x["size"]) for x in report["results"]]
    assert tasks == [("stylize", 64), ("fuse", 64), ("ref-johnson", 64), ("fuse-aligned", 64)]
    for row in report["results"]:
        assert set(row) == {"task", "size", "median_s", "gflop", "gflop_per_s", "peak_rss_mb"}
        assert row["median_s"] > 0 and row["peak_rss_mb"] > 0
        # the end-to-end pipeline call is timed, not counted: alignment is not a network
        assert (row["gflop"] is None) == (row["task"] == "fuse-aligned")
    assert plot.stat().st_size > 1000


def test_a_failing_measurement_ends_the_bench_with_an_error(tmp_path):
    """A measuring process that dies (an import error, out of memory: here it exits at once) must not leave
    the bench waiting."""
    script = tmp_path / "dying_bench.py"
    script.write_text(
        "import os, sys\n"
        "from ganmoco import bench\n"
        "def die(*args):\n"
        "    os._exit(3)\n"
        "if __name__ == '__main__':\n"
        "    bench._measure = die\n"
        "    sys.exit(bench.main(['--sizes', '64', '--repeats', '1', '--tasks', 'stylize']))\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "error: measuring stylize at 64 failed (exit code 3" in r.stderr


def test_rows_whose_extra_is_missing_are_skipped_with_a_word(tmp_path):
    """Without onnxruntime (hidden here) the stylize-onnx row is skipped, and stderr says why and how to get it."""
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "from ganmoco import bench\n"
        "sys.exit(bench.main(['--json', '--sizes', '64', '--repeats', '1', '--tasks', 'stylize-onnx', 'stylize']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [x["task"] for x in json.loads(r.stdout)["results"]] == ["stylize"]
    assert "skipping stylize-onnx: onnxruntime is not installed (pip install 'ganmoco[onnx]')" in r.stderr


def test_bench_video_rows_report_the_warping_error_of_both_paths():
    """`--video`: each frame on its own against the video path, on a clip of known motion. The video path moves
    the painted texture with the scene, so its warping error is the lower one."""
    from ganmoco.bench import video_report

    rows = video_report(frames=8, size=(192, 128))
    assert [r["task"] for r in rows] == ["video per-frame", "video"]
    for row in rows:
        assert set(row) == {"task", "size", "frames_per_s", "warping_error", "flicker"}
        assert row["size"] == "192x128" and row["frames_per_s"] > 0 and row["flicker"] > 0
    single, video = rows
    assert 0 < video["warping_error"] < 0.8 * single["warping_error"]
