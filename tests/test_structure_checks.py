"""The structure checks that `make lint` runs (tools/): the task's constants once per package, no import cycle,
no function over 100 lines. Each on small trees written here, and on this repository with the Makefile's options."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _tools_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


TASK = '''
    """Task constants. A CT image is named <case>_0000.nii.gz (a docstring is prose)."""
    ORGANS = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
    SUFFIX = "_0000.nii.gz"
    """The suffix _0000.nii.gz (a name's docstring)."""
'''


def test_one_definition_per_package_passes_and_prose_is_not_checked(tmp_path):
    from check_task_constants import main, problems

    root = _tree(
        tmp_path,
        {
            "alpha/__init__.py": "",
            "alpha/task.py": TASK,
            "alpha/cli.py": """
                import argparse
                from alpha.task import ORGANS, SUFFIX
                TISSUE = (("liver", "liver"), ("kidney", "cortex"), ("spleen", "spleen"), ("pancreas", "fat"))
                p = argparse.ArgumentParser()
                p.add_argument("--input", help="folder of <case>_0000.nii.gz images")
                names = list(ORGANS.values())
            """,
            "beta/__init__.py": "",
            "beta/task.py": TASK,  # another package may hold its own (inference/ and evaluation/ do)
            "scripts/tool.py": 'X = "_0000.nii.gz"\n',  # not a package
        },
    )
    assert problems(root, []) == []
    assert main(["--root", str(root)]) == 0


def test_copies_and_second_definitions_fail_and_a_new_package_is_checked(tmp_path, capsys):
    from check_task_constants import main, problems

    root = _tree(
        tmp_path,
        {
            "alpha/__init__.py": "",
            "alpha/task.py": TASK,
            "alpha/logs.py": """
                for organ in ("liver", "kidney", "spleen", "pancreas"):
                    print(organ)
            """,
            "alpha/data.py": """
                import re
                def image(folder, name):
                    return folder / f"{name}_0000.nii.gz"
                IMAGE = re.compile(r"_0000\\.nii\\.gz$")
            """,
            "alpha/more.py": 'LABELS = (("liver", 1), ("kidney", 2), ("spleen", 3), ("pancreas", 4))\n',
            "gamma/__init__.py": "",  # a package named nowhere
            "gamma/gen.py": "def path(d, n):\n    return d / (n + '_0000.nii.gz')\n",
        },
    )
    assert problems(root, []) == [
        "alpha/: the label set is defined 2 times (alpha/more.py:1, alpha/task.py:3); keep one and import it",
        "alpha/data.py:4: the input suffix written out again; import it from alpha/task.py",
        "alpha/data.py:5: the input suffix written out again; import it from alpha/task.py",
        "alpha/logs.py:2: the label set written out again; import it from alpha/more.py",
        "gamma/gen.py:2: the input suffix written out again; import it (alpha/task.py define it)",
    ]
    assert problems(root, ["alpha/more.py", "alpha/logs.py", "alpha/data.py", "gamma/*"]) == []
    assert main(["--root", str(root)]) == 1
    assert capsys.readouterr().err.count("\n") == 5


def test_import_cycles_are_found_through_function_level_and_relative_imports(tmp_path, capsys):
    from check_import_cycles import cycles, import_graph, main

    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def f():\n    from .c import g\n    return g\n",
            "pkg/c.py": "import os\ndef g():\n    from pkg.a import thing\n",
            "pkg/d.py": "from pkg.c import g\nfrom pkg import a, b\n",
        },
    )
    graph = import_graph(root, [])
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.a"},
        "pkg.d": {"pkg.a", "pkg.b", "pkg.c"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert main(["--root", str(root)]) == 1
    assert capsys.readouterr().err == "import cycle: pkg.a -> pkg.b -> pkg.c -> pkg.a\n"
    assert main(["--root", str(root), "--exclude", "pkg/c.py"]) == 0


def test_function_length_limit(tmp_path, capsys):
    from check_function_length import main

    body = "".join(f"    x{k} = {k}\n" for k in range(99))
    files = {"m.py": f"def ok():\n{body}\n\ndef long():\n{body}    x = 1\n", "sub/n.py": "def f():\n    pass\n"}
    _tree(tmp_path, files)  # ok: lines 1-100; long: lines 103-203
    assert main(["--root", str(tmp_path), "--max", "100"]) == 1
    assert capsys.readouterr().err == "m.py:103 long: 101 lines (more than 100)\n"
    assert main(["--root", str(tmp_path), "--max", "101"]) == 0
    assert "longest: m.py:103 long, 101 lines" in capsys.readouterr().out


def test_option_choices_are_written_once_and_named_in_choices(tmp_path, capsys):
    from check_option_choices import main

    files = {
        "inference/__init__.py": "",
        "inference/plan.py": 'SHAPES = ("pad", "fit")\nBASE = (4, 2)\nSTRIDES = ("auto", *map(str, BASE))\n',
        "inference/cli.py": "from inference.plan import SHAPES, STRIDES\n"
        "def add(p):\n    p.add_argument('--s', choices=SHAPES)\n    p.add_argument('--t', choices=STRIDES)\n",
        "phantom/__init__.py": "",
        "phantom/x.py": 'def f(p):\n    p.add_argument("--m", choices=("a", "b"))\n',  # not a product package
    }
    _tree(tmp_path, files)
    assert main(["--root", str(tmp_path)]) == 0
    capsys.readouterr()
    files["inference/engine.py"] = (
        'OTHER = ("fit", "pad")\ndef check(v):\n    return v in ("pad", "fit") and v not in (2, 4)\n'
        "def add(p):\n    p.add_argument('--r', choices=['x', 'y'])\n"
    )
    _tree(tmp_path, files)
    assert main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "inference/engine.py:5: choices= written as a literal; name it once at module level and use the name" in err
    assert any(line.startswith("the choices ('fit', 'pad') are defined 2 times") for line in err)
    assert any(line.startswith("inference/engine.py:3: ('fit', 'pad') written out again; use ") for line in err)
    assert "inference/engine.py:3: (2, 4) written out again; use BASE (inference/plan.py)" in err  # via STRIDES
    assert len(err) == 4


def test_layers_forbid_training_tools_in_inference_and_training_in_phantom(tmp_path, capsys):
    from check_layers import main

    files = {
        "inference/__init__.py": "",
        "inference/a.py": "import torch\ndef f(training):\n    return torch.nn.Linear, training.get('x')\n",
        "phantom/__init__.py": "",
        "phantom/b.py": "from inference.a import f\n",
    }
    _tree(tmp_path, files)
    assert main(["--root", str(tmp_path)]) == 0
    capsys.readouterr()
    files["inference/c.py"] = "import torch\ndef opt(m):\n    return torch.optim.Adam(m.parameters())\n"
    files["phantom/d.py"] = "def f():\n    from training.data import find_pairs\n"
    _tree(tmp_path, files)
    assert main(["--root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "inference/c.py:3: inference/ may not import torch.optim (torch.optim.Adam)",
        "phantom/d.py:2: phantom/ may not import training (training.data.find_pairs)",
    ]


def test_this_repository_passes_the_checks_as_make_lint_runs_them():
    from check_function_length import function_lengths
    from check_import_cycles import cycles, import_graph
    from check_layers import problems as layer_problems
    from check_option_choices import problems as choice_problems
    from check_task_constants import problems

    assert problems(REPO, []) == []
    assert choice_problems(REPO, []) == []
    assert layer_problems(REPO, []) == []
    assert cycles(import_graph(REPO, [])) == []
    assert function_lengths(REPO, [])[0][0] <= 100
