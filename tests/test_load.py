"""Load test of `python app.py`: N gradio_client clients for S seconds; requests served, errors, latency, RSS.

python tests/test_load.py --clients 8 --seconds 60          (a report)
pytest -m slow tests/test_load.py                           (the same, as a test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "ganmoco" / "assets" / "examples"


def start_app(model: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = os.environ | {
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    if model:
        env["GANMOCO_MODEL"] = model
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(360):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("app.py exited during start-up") from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("app.py did not start")


def run_load(url: str, pid: int, clients: int, seconds: float) -> dict:
    import psutil
    from gradio_client import Client, handle_file

    latencies, errors, lock = [], [], threading.Lock()
    stop = time.time() + seconds
    contents = sorted(EXAMPLES.glob("castle_*.jpg")) + sorted(EXAMPLES.glob("bird_*.jpg"))
    stacks = [("focus_near.jpg", "focus_far.jpg"), ("exposure_dark.jpg", "exposure_bright.jpg")]
    styles = sorted(EXAMPLES.glob("van_gogh_*.jpg"))

    def client(index: int):
        c = Client(url, verbose=False)
        k = index
        while time.time() < stop:
            k += 1
            start = time.perf_counter()
            try:
                if k % 4 == 0:
                    c.predict([handle_file(str(EXAMPLES / name)) for name in stacks[k // 4 % 2]], api_name="/fuse")
                else:
                    c.predict(
                        handle_file(str(contents[k % len(contents)])),
                        handle_file(str(styles[k % 4])),
                        api_name="/stylize",
                    )
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as err:  # noqa: BLE001 - a load test counts every failure
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    server = psutil.Process(pid)
    peak = [0]

    def watch():
        while time.time() < stop + 5:
            try:
                rss = server.memory_info().rss + sum(ch.memory_info().rss for ch in server.children(recursive=True))
            except psutil.Error:
                break
            peak[0] = max(peak[0], rss)
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=watch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "seconds": seconds,
        "served": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_s": round(statistics.median(ordered), 3) if ordered else None,
        "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3) if ordered else None,
        "peak_rss_mb": round(peak[0] / 2**20),
    }


@pytest.mark.slow
def test_eight_clients_for_a_minute(tiny_pipeline_dir):
    proc, url = start_app(str(tiny_pipeline_dir))
    try:
        report = run_load(url, proc.pid, clients=8, seconds=60)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(report)
    assert report["errors"] == 0, report["first_errors"]
    assert report["served"] >= 8
    assert report["peak_rss_mb"] < 4096


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--model", help="GANMOCO_MODEL for the app (default: the bundled model)")
    args = p.parse_args()
    proc, url = start_app(args.model)
    try:
        report = run_load(url, proc.pid, args.clients, args.seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
