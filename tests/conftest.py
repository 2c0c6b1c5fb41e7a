import json
import os
import socket
import subprocess
import sys
from pathlib import Path

# Offline and quiet, before anything imports huggingface_hub or gradio.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    GRADIO_ANALYTICS_ENABLED="False",
    DIFFUSERS_VERBOSITY="error",
    TOKENIZERS_PARALLELISM="false",
)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ganmoco import GanMocoGenerator, GanMocoPipeline, StyleEncoder  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "ganmoco" / "assets" / "examples"
TINY_GENERATOR = {"base_channels": 8, "max_channels": 16, "num_res_blocks": 1, "code_dim": 16}
TINY_STYLE_ENCODER = {"code_dim": 16, "trunk_layer": "Conv2d_4a_3x3", "image_size": 96}
TINY_DISCRIMINATOR = {"base_channels": 8, "num_layers": 2, "num_scales": 2, "code_dim": 16}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    """A real (untrained, tiny) pipeline saved as config.json + safetensors."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_pipeline")
    pipe = GanMocoPipeline(GanMocoGenerator(**TINY_GENERATOR), StyleEncoder(**TINY_STYLE_ENCODER))
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_configs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("configs")
    paths = {}
    for name, config in (
        ("generator", TINY_GENERATOR),
        ("style_encoder", TINY_STYLE_ENCODER),
        ("discriminator", TINY_DISCRIMINATOR),
    ):
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(config))
    return paths


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two images in 8-bit levels."""
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def run_cli(*args) -> subprocess.CompletedProcess:
    """`ganmoco ARGS...` in this process (arguments may be paths): `ganmoco.cli.main` with its stdout and stderr
    captured, as the console script runs it. The console script itself, and what must not be imported before an
    argument check, are tested in real processes (test_cli.py)."""
    import contextlib
    import io
    import warnings

    from ganmoco import cli

    def show(message, category, filename, lineno, file=None, line=None):  # to stderr, as a process would
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    argv, out, err = [str(a) for a in args], io.StringIO(), io.StringIO()
    formatwarning = warnings.formatwarning
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # a process's defaults (pytest would otherwise record the warnings the CLI prints)
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show
            code = cli.main(argv)
    except SystemExit as exit_:  # --help, and argparse's own exits
        code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    finally:
        warnings.formatwarning = formatwarning  # main sets the CLI's one-line warnings: keep them to the call
    return subprocess.CompletedProcess(["ganmoco", *argv], code, out.getvalue(), err.getvalue())


def assert_one_error_line(r: subprocess.CompletedProcess) -> None:
    """The CLI's bad-input contract: exit 2, one `error:` line on stderr, no traceback."""
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr
