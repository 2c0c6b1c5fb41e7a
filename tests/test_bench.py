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
    assert [(x["task"], x["size"]) for x in report["results"]] == [("stylize", 64), ("fuse", 64), ("ref-johnson", 64)]
    for row in report["results"]:
        assert set(row) == {"task", "size", "median_s", "gflop", "gflop_per_s", "peak_rss_mb"}
        assert row["median_s"] > 0 and row["gflop"] > 0 and row["peak_rss_mb"] > 0
    assert plot.stat().st_size > 1000
