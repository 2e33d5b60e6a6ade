"""The phantom generator stays outside the product: nothing but tests and benchmarks imports it (inference/,
niftiio/, evaluation/ and the training loop read phantoms as files). The tree-wide checks (no import cycle, no
function over 100 lines, the task's constants once per package) are tools/'s, run by `make lint` and
tests/test_structure_checks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _tools_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))


def test_nothing_but_benchmarks_imports_the_phantom_generator():
    from check_import_cycles import import_graph

    graph = import_graph(REPO, [])
    assert "phantom.generate" in graph and "phantom.cli" in graph
    users = {m: sorted(n for n in deps if n.split(".")[0] == "phantom") for m, deps in graph.items()}
    allowed = ("phantom", "bench")
    assert {m: n for m, n in users.items() if n and m.split(".")[0] not in allowed} == {}
