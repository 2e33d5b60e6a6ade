"""One error style for every command line: a usage error is one line on stderr, ``<prog>: error: ... (see <prog>
--help)``, with exit code 2; options are never matched by prefix; every parser of the project is the shared one."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

COMMANDS = [  # (module with main(argv), the program name it shows)
    ("evaluation.evaluate", "python -m evaluation.evaluate"),
    ("evaluation.scorecard", "python -m evaluation.scorecard"),
    ("evaluation.figure", "python -m evaluation.figure"),
    ("evaluation.efficiency", "python -m evaluation.efficiency"),
    ("phantom.cli", "python -m phantom"),
    ("phantom.render", "python -m phantom.render"),
    ("inference.predict", "python -m inference.predict"),
    ("inference.warm_cache", "python -m inference.warm_cache"),
    ("training.train", "python -m training.train"),
    ("training.score", "python -m training.score"),
    ("training.phase_split", "python -m training.phase_split"),
    ("training.postprocess_rules", "python -m training.postprocess_rules"),
    ("training.ablation", "python -m training.ablation"),
]


def usage_error(capsys, module: str, argv: list[str]) -> str:
    """Run ``module.main(argv)``; assert exit code 2 (raised or returned), nothing on stdout and one line on
    stderr; return that line."""
    main = importlib.import_module(module).main
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("module, prog", COMMANDS)
def test_an_unknown_option_is_one_line_with_exit_code_2(capsys, module, prog):
    line = usage_error(capsys, module, ["--no-such-option"])
    assert line.startswith(f"{prog}: error: ") and line.endswith(f"(see {prog} --help)")


def test_options_are_not_matched_by_prefix(capsys, tmp_path):
    folders = ["--gt", str(tmp_path), "--pred", str(tmp_path), "--out", str(tmp_path / "o")]
    assert "unrecognized arguments: --work 2" in usage_error(capsys, "evaluation.evaluate", [*folders, "--work", "2"])
    line = usage_error(capsys, "phantom.cli", ["--out", str(tmp_path / "p"), "--case", "2"])
    assert "unrecognized arguments: --case 2" in line and not (tmp_path / "p").exists()
    line = usage_error(capsys, "inference.predict", ["-i", str(tmp_path), "-o", str(tmp_path / "o"), "--phase", "4"])
    assert "unrecognized arguments: --phase 4" in line


def test_phantom_without_out_and_warm_cache_without_weights(capsys, tmp_path):
    assert "--out is required unless --render is given" in usage_error(capsys, "phantom.cli", [])
    line = usage_error(capsys, "inference.warm_cache", ["--weights", str(tmp_path / "nope.pt")])
    assert f"--weights {tmp_path / 'nope.pt'}: checkpoint file not found" in line


def parser_constructions(path: Path) -> list[int]:
    """Lines of a module that construct argparse.ArgumentParser directly."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "ArgumentParser":
            lines.append(node.lineno)
    return lines


def test_every_command_uses_the_shared_parser():
    """Only niftiio.command_line builds on argparse.ArgumentParser (tools/ stand alone, with allow_abbrev=False)."""
    direct = {}
    for folder in ("evaluation", "inference", "training", "phantom", "bench", "niftiio"):
        for path in sorted((REPO / folder).rglob("*.py")):
            found = parser_constructions(path)
            if found:
                direct[str(path.relative_to(REPO))] = found
    assert direct == {}
    assert "allow_abbrev=False" in (REPO / "tools" / "source_tree.py").read_text()
