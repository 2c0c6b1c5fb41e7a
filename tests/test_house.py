"""The front door and the house: a README in a user's order that fits on a few screens, documents whose links
resolve, a bundled model folder that holds only the model, and modules that import no torch where a command
must answer before it loads."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "ganmoco" / "assets" / "default-model"


def test_the_readme_is_short_and_in_a_users_order():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 15_000
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    order = ["Install and run the demo", "The demo", "Python", "Command line", "Train on your own images", "More"]
    assert [h for h in headings if h in order] == order, headings
    assert "<!-- test-command -->" in text and "pip install -e . && python app.py" in text


def _links(path: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]


def test_every_relative_link_in_the_docs_resolves():
    pages = [REPO / "README.md", MODEL / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = [(page.name, target) for page in pages for target in _links(page) if not (page.parent / target).exists()]
    assert not broken
    linked = {(page.parent / t).resolve() for page in pages for t in _links(page)}
    assert {p.resolve() for p in (REPO / "docs").glob("*.md")} <= linked | {(REPO / "docs" / "LICENSES.md").resolve()}


def test_the_bundled_model_folder_holds_the_model_its_card_and_licences():
    names = {p.name for p in MODEL.iterdir()}
    assert names == {"model_index.json", "generator", "style_encoder", "presets", "README.md", "LICENSES.md", "NOTICE"}
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".md", ""}
    assert sum(p.stat().st_size for p in files) < 6 * 2**20


def test_what_a_command_checks_with_imports_no_torch():
    code = (
        "import sys\n"
        "import ganmoco.batch, ganmoco.cli, ganmoco.images, ganmoco.migrate, ganmoco.options, ganmoco.weights\n"
        "print(sorted({'torch', 'torchvision', 'diffusers'} & set(sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr[-1000:])


def test_train_is_a_package_and_its_script_still_runs_from_anywhere(tmp_path):
    for cmd, cwd in (
        ([sys.executable, "-m", "train.train", "--help"], REPO),
        ([sys.executable, str(REPO / "train" / "train.py"), "--help"], tmp_path),
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
        assert r.returncode == 0 and "--adversarial_weight" in r.stdout, (cmd, r.stderr[-1000:])
