"""README.md against the code: its options table lists exactly the options of python -m inference.predict, every
relative link of README.md and docs/*.md reaches a file (and a heading, where it names one), and .gitignore covers
what the README's commands write in the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from inference.predict import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown text."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no section ## {heading}"
    return match.group(1)


def table_options(text: str) -> set[str]:
    """The options named in the first cell of each row of the Markdown tables of ``text``."""
    options = set()
    for line in text.splitlines():
        if line.startswith("| `-"):
            options |= set(re.findall(r"`(--?[a-z][a-z-]*)`", line.split("|")[1]))
    return options


def test_the_options_table_lists_exactly_the_options_predict_accepts():
    accepted = {s for action in build_parser()._actions for s in action.option_strings}
    assert table_options(section(README.read_text(), "Options")) == accepted


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file(document):
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or a heading of the same file
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve()
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


def written_paths(text: str, makefile: str) -> set[str]:
    """The paths in the repository that the README's commands write: the -o/--out/--output and OUTPUT_DIR of its
    commands, the folder a docker run mounts for outputs, the DICOM series it makes, the Python API's outputs, and
    what the make targets it names write (Makefile variables). Placeholders in capitals (IN, OUT) are left out."""
    code = "\n".join(
        [line for line in text.splitlines() if line.startswith("    ")]
        + re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    )
    found = set(re.findall(r"(?:\s-o|--out|--output|OUTPUT_DIR=)[ =]([^\s;'\"]+)", code))
    found |= set(re.findall(r"-v \"?\$PWD/([^\":]+)\"?:/workspace/outputs", code))
    found |= set(re.findall(r"pathlib\.Path\('([^']+)'\)", code))
    found |= set(re.findall(r"segment_folder\(\s*\"[^\"]+\",\s*\"([^\"]+)\"", code))
    found |= set(re.findall(r"WriteImage\([^,]+,\s*\"([^\"]+)\"\)", code))
    if "make example" in text:
        found.add(re.search(r"^EXAMPLE := (\S+)", makefile, re.MULTILINE).group(1))
    if "make realcheck" in text:
        found.add(re.search(r"^REALCHECK \?= (\S+)", makefile, re.MULTILINE).group(1))
    if "pip install ." in text:
        found |= {"build", "runet.egg-info"}
    return {p.rstrip("/") for p in found if not re.fullmatch(r"[A-Z_]+", p) and not p.startswith(("/", "$"))}


FILE_SUFFIXES = (".png", ".nii.gz", ".dcm", ".csv", ".json")


def test_the_gitignore_covers_what_the_readmes_commands_write():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = written_paths(README.read_text(), (ROOT / "Makefile").read_text())
    assert {"out", "out-fast", "out-one", "out-extra", "out-dicom", "example", "fig.png", "data/phantoms"} <= paths
    # a file is checked as it is; a folder through a file inside it
    probes = [p if p.endswith(FILE_SUFFIXES) else f"{p}/probe" for p in sorted(paths)]
    result = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT, capture_output=True, text=True)
    ignored = set(result.stdout.split())
    assert [p for p in probes if p not in ignored] == []


def test_the_quick_start_commands_are_make_targets_and_ci_runs_the_test_command():
    quick = section(
        README.read_text(), "Quick start (a fresh machine: Python 3.10+, no GPU, no Docker, nothing to download)"
    )
    commands = re.findall(r"^    (make \S+)", quick, re.MULTILINE)
    assert commands[:2] == ["make example", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert all(re.search(rf"^{c.split()[1]}:", makefile, re.MULTILINE) for c in commands)
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
