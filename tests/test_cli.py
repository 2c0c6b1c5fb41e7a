from PIL import Image

from .conftest import assert_one_error_line, run_cli


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
        examples / "bird_owl.jpg",
        examples / "bird_duck.jpg",
        "--task",
        "multi-exposure",
        "--model",
        tiny_pipeline_dir,
        "--out",
        fused,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(fused).size == Image.open(examples / "bird_owl.jpg").size


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
