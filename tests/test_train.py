"""The training script as users run it: real processes, tiny real images, tiny real models."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file

from ganmoco import GanMocoPipeline

from .conftest import free_port

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train" / "train.py"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, examples):
    root = tmp_path_factory.mktemp("data")
    (root / "content" / "nested").mkdir(parents=True)
    (root / "style").mkdir()
    photos = sorted(examples.glob("castle_*.jpg")) + sorted(examples.glob("bird_*.jpg"))
    for i, path in enumerate(photos):
        folder = root / "content" / ("nested" if i % 2 else "")
        Image.open(path).convert("RGB").resize((64, 48)).save(folder / f"{path.stem}.png")
    for path in sorted(examples.glob("van_gogh_*.jpg")):  # and mirrored copies: batches of 4 without wrapping
        style = Image.open(path).convert("RGB").resize((56, 56))
        style.save(root / "style" / f"{path.stem}.jpg")
        style.transpose(Image.FLIP_LEFT_RIGHT).save(root / "style" / f"{path.stem}_mirrored.jpg")
    (root / "content" / "broken.jpg").write_bytes(b"not an image at all")
    return root


def _args(tiny_data, tiny_configs, out, *extra):
    return [
        "--content_dir",
        tiny_data / "content",
        "--style_dir",
        tiny_data / "style",
        "--output_dir",
        out,
        "--generator_config",
        tiny_configs["generator"],
        "--style_encoder_config",
        tiny_configs["style_encoder"],
        "--discriminator_config",
        tiny_configs["discriminator"],
        "--resolution",
        "32",
        "--train_batch_size",
        "2",
        "--validation_images",
        "1",
        "--report_to",
        "none",
        *extra,
    ]


def _train(args, timeout=600, env=None):
    run_env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    return subprocess.run(
        [sys.executable, str(TRAIN), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        cwd=REPO,
    )


def _generator_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(next((folder / "generator").glob("*.safetensors")))


def test_a_short_run_writes_a_loadable_pipeline(tiny_data, tiny_configs, tmp_path, examples):
    out = tmp_path / "run"
    colour_config = tmp_path / "generator.json"  # the default model's recipe: colour matching, VGG mean/std
    colour_config.write_text(json.dumps(json.loads(tiny_configs["generator"].read_text()) | {"match_colors": True}))
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            out,
            "--max_train_steps",
            "4",
            "--checkpointing_steps",
            "2",
            "--checkpoints_total_limit",
            "1",
            "--validation_steps",
            "2",
            "--fusion_ratio",
            "0.5",
            "--generator_config",
            colour_config,
            "--vgg_meanstd_weight",
            "1",
            "--temporal_weight",
            "0.5",
            "--halo_weight",
            "0.5",
            "--coarse_style_weight",
            "0.5",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipping unreadable image" in r.stderr and "broken.jpg" in r.stderr
    assert "1 unreadable skipped" in r.stderr
    pipe = GanMocoPipeline.from_pretrained(out)
    result = pipe.stylize(examples / "bird_owl.jpg", examples / "van_gogh_bridge.jpg")
    assert result.size == Image.open(examples / "bird_owl.jpg").size
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step-000002.png", "step-000004.png"]
    args = json.loads((out / "training_args.json").read_text())
    assert args["max_train_steps"] == 4 and args["fusion_ratio"] == 0.5
    card = (out / "README.md").read_text()
    assert pipe.generator.config.match_colors and pipe.style_code(examples / "van_gogh_bridge.jpg").shape == (1, 22)
    assert "| VGG mean/std share of L_style | 1.0 |" in card and "(`match_colors`) | yes |" in card
    assert "| temporal weight (L_temporal) | 0.5 |" in card and "| halo weight (L_halo) | 0.5 |" in card
    assert "| coarse style weight (L_style_coarse) | 0.5 |" in card
    assert "| steps | 4 |" in card and "{" not in card.split("---", 2)[2].replace("{content_dir}", "")
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl")) or list(out.rglob("random_states_*.pkl"))


def test_resume_continues_exactly(tiny_data, tiny_configs, tmp_path):
    straight = tmp_path / "straight"
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            straight,
            "--max_train_steps",
            "4",
            "--checkpointing_steps",
            "100",
            "--fusion_ratio",
            "0.5",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    halves = tmp_path / "halves"
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            halves,
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "2",
            "--fusion_ratio",
            "0.5",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            halves,
            "--max_train_steps",
            "4",
            "--checkpointing_steps",
            "100",
            "--fusion_ratio",
            "0.5",
            "--resume_from_checkpoint",
            "latest",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Resuming from checkpoint" in r.stderr and "checkpoint-2" in r.stderr
    a, b = _generator_weights(straight), _generator_weights(halves)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_killed_run_resumes_from_its_last_complete_checkpoint(tiny_data, tiny_configs, tmp_path):
    out = tmp_path / "killed"
    args = _args(
        tiny_data,
        tiny_configs,
        out,
        "--max_train_steps",
        "400",
        "--checkpointing_steps",
        "2",
        "--validation_steps",
        "1000",
    )
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoint-4" / "train_state.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint-4").is_dir(), "the run never reached its second checkpoint"
    done = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            out,
            "--max_train_steps",
            str(done[-1] + 2),
            "--checkpointing_steps",
            "1000",
            "--resume_from_checkpoint",
            "latest",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Resuming from checkpoint {out / f'checkpoint-{done[-1]}'}" in r.stderr
    assert GanMocoPipeline.from_pretrained(out).generator is not None


def _first_step(tmp_path, name, tiny_data, tiny_configs, *extra, style_dir=None):
    """(logged gradient norm of step 1, generator weights after it) of a one-step run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / name
    args = _args(
        tiny_data,
        tiny_configs,
        out,
        "--max_train_steps",
        "1",
        "--fusion_ratio",
        "0",
        "--adversarial_weight",
        "0",
        "--max_grad_norm",
        "0",
        "--report_to",
        "tensorboard",
        *extra,
    )
    if style_dir is not None:
        args[args.index("--style_dir") + 1] = style_dir
    r = _train(args)
    assert r.returncode == 0, r.stderr[-3000:]
    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    return events.Scalars("grad_norm_G")[0].value, torch.cat([v.flatten() for v in _generator_weights(out).values()])


def test_gradient_accumulation_matches_a_larger_batch(tiny_data, tiny_configs, tmp_path):
    """2 micro-batches of 2 give the same gradient as one batch of 4 (fp32); other data does not."""
    big, w_big = _first_step(tmp_path, "big", tiny_data, tiny_configs, "--train_batch_size", "4")
    acc, w_acc = _first_step(
        tmp_path, "acc", tiny_data, tiny_configs, "--train_batch_size", "2", "--gradient_accumulation_steps", "2"
    )
    other_styles = tmp_path / "other_styles"
    other_styles.mkdir()
    for i, path in enumerate(sorted((tiny_data / "style").iterdir())):
        ImageOps.invert(Image.open(path).convert("RGB")).save(other_styles / f"s{i}.png")
    other, _ = _first_step(
        tmp_path, "other", tiny_data, tiny_configs, "--train_batch_size", "4", style_dir=other_styles
    )
    assert acc == pytest.approx(big, rel=1e-4)
    assert abs(other - big) > 1e-3 * big
    # Adam's first step moves each weight by about lr * sign(grad); only gradients at float-noise level
    # (biases in front of instance norms, whose true gradient is zero) may point the other way
    assert (torch.sign(w_big) == torch.sign(w_acc)).float().mean() > 0.99
    assert (w_big - w_acc).abs().max() <= 2.01 * 2e-4


def test_two_processes_keep_identical_generators(tiny_data, tiny_configs, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(TRAIN),
        *map(
            str,
            _args(
                tiny_data,
                tiny_configs,
                out,
                "--max_train_steps",
                "4",
                "--checkpointing_steps",
                "2",
                "--fusion_ratio",
                "0.5",
            ),
        ),
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "true", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generator weights identical on 2 process(es)" in r.stderr
    pipe = GanMocoPipeline.from_pretrained(out)
    assert pipe.generator.config.base_channels == 8


def test_bad_arguments_fail_clearly(tiny_data, tiny_configs, tmp_path, capsys):
    """Argument errors in this process (`train` is a package): argparse's exit 2 with the reason, and a bad
    architecture config named when the networks are built."""
    from train.networks import build_networks
    from train.train import parse_args

    for extra, message in (
        (["--max_train_steps", "0"], "--max_train_steps must be at least 1"),
        (["--fusion_ratio", "0.8", "--upscale_ratio", "0.5"], "at most 1"),
        (["--upscale_ratio", "0.2", "--resolution", "66"], "divisible by 4"),
        (["--adversarial_weight", "x"], "invalid float value"),
        (["--bracket_frames", "1"], "--bracket_frames must be 0 (none) or at least 2"),
        (["--upscale_track", "jpeg"], "invalid choice: 'jpeg'"),
    ):
        with pytest.raises(SystemExit) as done:
            parse_args([str(a) for a in _args(tiny_data, tiny_configs, tmp_path / "x", *extra)])
        assert done.value.code == 2 and message in capsys.readouterr().err, extra
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"base_channels": -1}))
    args = parse_args(
        [str(a) for a in _args(tiny_data, tiny_configs, tmp_path / "y", "--generator_config", bad_config)]
    )
    with pytest.raises(ValueError, match="base_channels must be a positive integer"):
        build_networks(args, torch.device("cpu"))
    # an unset --upscale_ratio yields to --fusion_ratio (0.1, or what is left)
    base = ["--content_dir", "c", "--style_dir", "s", "--output_dir", "o"]
    assert parse_args(base).upscale_ratio == 0.1
    assert parse_args([*base, "--fusion_ratio", "0.95"]).upscale_ratio == 0.05
    assert parse_args([*base, "--fusion_ratio", "1"]).upscale_ratio == 0.0


def test_every_loss_weight_is_a_term_weight_flag_and_the_old_names_still_work(capsys):
    """One naming scheme, --<term>_weight; the names of earlier releases (README commands, training_args.json of
    shipped models) parse to the same weights."""
    from dataclasses import fields

    from train.steps import LossWeights
    from train.train import parse_args

    base = ["--content_dir", "c", "--style_dir", "s", "--output_dir", "o"]
    names = [f.name for f in fields(LossWeights) if f.name != "gan_loss"]
    assert all(name.endswith("_weight") for name in names), names
    old = {"lambda_adv": "adversarial_weight", "alpha_style": "style_weight", "beta_fusion": "fusion_weight"}
    old |= {"gamma_feature": "feature_weight", "lambda_tv": "tv_weight", "delta_upscale": "upscale_weight"}
    for i, (before, now) in enumerate(old.items()):
        value = str(0.25 + i)
        assert getattr(parse_args([*base, f"--{before}", value]), now) == float(value)
        assert getattr(parse_args([*base, f"--{now}", value]), now) == float(value)
    weights = LossWeights.from_args(parse_args([*base, "--gamma_feature", "0", "--lambda_adv", "0.5"]))
    assert weights.feature_weight == 0 and weights.adversarial_weight == 0.5
    shipped = json.loads((REPO / "docs" / "default-model" / "training_args.json").read_text())
    assert set(old) & set(shipped)  # the bundled model was trained under the old names: they must keep parsing
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--adversarial_weight ADVERSARIAL_WEIGHT, --lambda_adv ADVERSARIAL_WEIGHT" in text


class _FakeHub:
    """The only fake in the suite: the Hub's upload endpoints (nothing here accepts uploads). It answers
    create-repo, the model card check, preupload (every file as a regular git blob) and commit, and keeps
    what was committed."""

    def __init__(self):
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files, self.repos = {}, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request['organization']}/{request['name']}"
                    hub.repos.append(repo)
                    self._reply({"url": f"{hub.url}/{repo}", "name": repo})
                elif self.path == "/api/validate-yaml":  # the model card's front matter
                    self._reply({"errors": [], "warnings": []})
                elif "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    self._reply(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                elif "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.split("/api/models/")[1].split("/commit/")[0]
                    self._reply({"commitUrl": f"{hub.url}/{repo}/commit/{'0' * 40}", "commitOid": "0" * 40})
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_push_to_hub_uploads_the_pipeline_folder(tiny_data, tiny_configs, tmp_path):
    hub = _FakeHub()
    out = tmp_path / "pushed"
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token", "HF_HUB_DISABLE_XET": "1"}
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            out,
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "1",
            "--push_to_hub",
            "--hub_model_id",
            "painter/my-ganmoco",
        ),
        env=env,
    )
    hub.server.shutdown()
    assert r.returncode == 0, r.stderr[-3000:]
    assert hub.repos == ["painter/my-ganmoco"]
    assert {
        "model_index.json",
        "README.md",
        "training_args.json",
        "generator/config.json",
        "generator/diffusion_pytorch_model.safetensors",
        "style_encoder/config.json",
    } <= set(hub.files)
    assert not any(path.startswith("checkpoint-") for path in hub.files)
    local = (out / "generator" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert hub.files["generator/diffusion_pytorch_model.safetensors"] == local


def test_nonfinite_updates_are_skipped_then_stop_the_run(tiny_data, tiny_configs, tmp_path):
    # an absurd learning rate: the first update blows the weights up, every later loss is inf or NaN
    r = _train(
        _args(
            tiny_data,
            tiny_configs,
            tmp_path / "nan",
            "--max_train_steps",
            "50",
            "--learning_rate",
            "1e30",
            "--max_nonfinite_steps",
            "3",
            "--checkpointing_steps",
            "1000",
        )
    )
    assert r.returncode != 0
    assert r.stderr.count("update skipped") == 3
    assert "error: 3 non-finite updates in a row" in r.stderr


def test_fusion_head_only_keeps_the_style_path(tiny_data, tiny_configs, tiny_pipeline_dir, tmp_path):
    """--train_fusion_head_only: the fusion head and task codes learn, every other generator weight stays; here
    on three-frame exposure brackets only (--bracket_frames 3 --no_synthetic_fusion)."""
    init, out = tmp_path / "init", tmp_path / "run"
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    with torch.no_grad():  # a fresh norm maps every code to zero: give the task codes a gradient to follow
        for name, param in pipe.generator.named_parameters():
            if "to_scale_shift.weight" in name:
                param.normal_(std=0.1)
    pipe.save_pretrained(init)
    r = _train(
        _args(tiny_data, tiny_configs, out, "--init_from", init, "--train_fusion_head_only")
        + ["--fusion_ratio", "1", "--max_train_steps", "2", "--learning_rate", "1e-2", "--ema_decay", "0"]
        + ["--bracket_frames", "3", "--no_synthetic_fusion"]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    before, after = _generator_weights(init), _generator_weights(out)
    head = [k for k in before if k.startswith(("fusion.", "task_codes."))]
    # the last score bias is the same for every source, so the softmax over sources gives it no gradient
    learned = [k for k in head if k != "fusion.score.2.bias"]
    unchanged = [k for k in learned if torch.equal(before[k], after[k])]
    assert learned and not unchanged, unchanged
    assert all(torch.equal(before[k], after[k]) for k in before if k not in head)


def test_style_decoder_only_keeps_encoder_fusion_and_upscaling(tiny_data, tiny_configs, tiny_pipeline_dir, tmp_path):
    """--train_style_decoder_only with the temporal, halo and coarse style terms: the residual trunk and decoder
    learn; the encoder that the fusion and upscaling heads read, and those heads, stay bit for bit; a second "only"
    flag is refused."""
    init, out = tmp_path / "init", tmp_path / "run"
    GanMocoPipeline.from_pretrained(tiny_pipeline_dir).save_pretrained(init)
    args = _args(tiny_data, tiny_configs, out, "--init_from", init, "--train_style_decoder_only")
    args += ["--fusion_ratio", "0", "--upscale_ratio", "0", "--max_train_steps", "2", "--learning_rate", "1e-2"]
    args += ["--ema_decay", "0", "--adversarial_weight", "0", "--temporal_weight", "1", "--teacher_weight", "1"]
    args += ["--halo_weight", "1", "--coarse_style_weight", "1"]
    r = _train(args)
    assert r.returncode == 0, r.stderr[-3000:]
    before, after = _generator_weights(init), _generator_weights(out)
    trained = [k for k in before if k.startswith(("trunk.", "decoder.", "to_rgb."))]
    assert trained and any(not torch.equal(before[k], after[k]) for k in trained)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in trained)
    r = _train(args + ["--train_fusion_head_only"])
    assert r.returncode != 0
    assert "--train_fusion_head_only and --train_style_decoder_only exclude each other" in r.stderr


def test_help_shows_every_default(capsys):
    from train.train import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag, default in (("--lambda_adv", "0.1"), ("--learning_rate", "0.0002"), ("--resolution", "256")):
        dest = "ADVERSARIAL_WEIGHT" if flag == "--lambda_adv" else flag.lstrip("-").upper()
        after = text.split(f"{flag} {dest}")[-1]  # the help entry, after the usage line and any other name
        assert f"(default: {default})" in after.split(" --", 1)[0], flag


def test_upscale_head_only_starts_fresh_and_keeps_the_rest(tiny_data, tiny_configs, tiny_pipeline_dir, tmp_path):
    """--train_upscale_head_only from a model saved before the upscaling head existed: the missing head starts
    from a fresh initialisation (not the zeros a plain load leaves) and learns; every other weight stays."""
    from safetensors.torch import save_file

    init, out = tmp_path / "init", tmp_path / "run"
    GanMocoPipeline.from_pretrained(tiny_pipeline_dir).save_pretrained(init)
    weights = next((init / "generator").glob("*.safetensors"))
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("upscaler.")}, weights)
    r = _train(
        _args(tiny_data, tiny_configs, out, "--init_from", init, "--train_upscale_head_only")
        + ["--upscale_ratio", "1", "--fusion_ratio", "0", "--max_train_steps", "3", "--learning_rate", "1e-2"]
        + ["--ema_decay", "0", "--adversarial_weight", "0", "--feature_weight", "0"]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "start fresh" in r.stderr
    before, after = _generator_weights(init), _generator_weights(out)
    head = [k for k in after if k.startswith("upscaler.")]
    assert head and all(after[k].abs().sum() > 0 for k in head if k.endswith("weight"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and the saved model upscales
    pipe = GanMocoPipeline.from_pretrained(out)
    assert pipe.upscale(Image.new("RGB", (20, 12), (90, 40, 200)), scale=4).size == (80, 48)


def test_a_denoising_upscaler_learns_its_strength(tiny_data, tiny_configs, tmp_path):
    """With upscale_denoise in the generator's config, the degraded training inputs (strength 1) move the
    strength's shifts away from zero while the clean ones (strength 0) train the plain head."""
    config = tmp_path / "g.json"
    config.write_text(json.dumps({**json.loads(tiny_configs["generator"].read_text()), "upscale_denoise": True}))
    out = tmp_path / "run"
    r = _train(
        _args(tiny_data, {**tiny_configs, "generator": config}, out, "--upscale_ratio", "1", "--fusion_ratio", "0")
        + ["--max_train_steps", "4", "--learning_rate", "1e-2", "--ema_decay", "0", "--adversarial_weight", "0"]
        + ["--feature_weight", "0", "--upscale_feature_weight", "0.1"]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert _generator_weights(out)["upscaler.denoise"].abs().sum() > 0


def test_average_weights_blends_two_pipelines_of_one_lineage(tiny_pipeline_dir, tmp_path, examples):
    """train/average_weights.py: t = 0 is the base bit for bit, 1 the fine-tune, 0.5 the midpoint of every
    weight, and the result loads and paints; models of another architecture are refused with one line."""
    script = REPO / "train" / "average_weights.py"
    tuned = tmp_path / "tuned"
    pipe = GanMocoPipeline.from_pretrained(tiny_pipeline_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in pipe.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pipe.save_pretrained(tuned)
    weights = "generator/diffusion_pytorch_model.safetensors"
    a, b = load_file(tiny_pipeline_dir / weights), load_file(tuned / weights)
    for t in (0.0, 0.5, 1.0):
        out = tmp_path / f"blend{t}"
        r = subprocess.run(
            [sys.executable, script, "--base", tiny_pipeline_dir, "--tuned", tuned, "--weight", str(t), "--out", out],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        mixed = load_file(out / weights)
        for name in a:
            expected = {0.0: a[name], 1.0: b[name]}.get(t, (a[name] + b[name]) / 2)
            assert torch.allclose(mixed[name], expected, atol=1e-6), name
    base_again = load_file(tmp_path / "blend0.0" / weights)
    assert all(torch.equal(base_again[name], a[name]) for name in a)
    image = GanMocoPipeline.from_pretrained(tmp_path / "blend0.5").stylize(
        examples / "bird_owl.jpg", examples / "van_gogh_bridge.jpg"
    )
    assert image.size == Image.open(examples / "bird_owl.jpg").size

    other = tmp_path / "other"
    config = json.loads((tuned / "generator" / "config.json").read_text())
    shutil.copytree(tuned, other)
    config["base_channels"] = config["base_channels"] * 2
    (other / "generator" / "config.json").write_text(json.dumps(config))
    r = subprocess.run(
        [
            sys.executable,
            script,
            "--base",
            tiny_pipeline_dir,
            "--tuned",
            other,
            "--weight",
            "0.5",
            "--out",
            tmp_path / "x",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and r.stderr.strip() == "error: the generator configs of --base and --tuned differ"
    assert not (tmp_path / "x").exists()
