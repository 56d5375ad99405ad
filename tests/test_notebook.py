"""The tutorial notebook: committed with the outputs of the offline run, and run again to check them."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tests.notebook_outputs import INJECTED, NOTEBOOK, WIDGET, differences, execute


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]


def test_the_committed_notebook_shows_each_step_of_the_offline_run() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []) and INJECTED in code[1].metadata.get("tags", [])
    assert "WEIGHTS = None" in code[1].source  # the outputs say which weights made them
    steps = [c for c in code[2:] if not c.source.startswith("import") and "%matplotlib" not in c.source]
    assert all(c.outputs for c in steps[:-1]), [c.source[:40] for c in steps[:-1] if not c.outputs]
    outputs = _outputs(notebook)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the neighbours and a group of copies
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    assert not [o for o in outputs if WIDGET in o.get("data", {})]


def test_a_changed_output_is_a_difference_and_a_changed_distance_is_not() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert differences(committed, nbformat.read(NOTEBOOK, as_version=4)) == []
    changed = nbformat.read(NOTEBOOK, as_version=4)
    count = next(o for o in _outputs(changed) if o.get("data", {}).get("text/plain", "").isdigit())
    count["data"]["text/plain"] = str(int(count["data"]["text/plain"]) + 1)
    assert len(differences(committed, changed)) == 1
    nudged = nbformat.read(NOTEBOOK, as_version=4)
    table = next(o for o in _outputs(nudged) if "distance" in o.get("data", {}).get("text/plain", ""))
    table["data"]["text/plain"] = table["data"]["text/plain"].replace("0.00", "0.01", 1)
    assert "0.01" in table["data"]["text/plain"] and differences(committed, nudged) == []


@pytest.mark.slow
def test_the_notebook_runs_offline_and_gives_the_committed_outputs(tmp_path: Path) -> None:
    server = os.environ.get("MILVUS_TEST_SERVER_URI")  # also run the server section
    fresh = execute(tmp_path, server_uri=server)
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in _outputs(fresh))
    assert "(2048,)" in text and "(30, 2048)" in text
    results = tmp_path / "results" / "notebook-offline"
    assert (results / "figure.png").stat().st_size > 10_000
    assert len(list((results / "nearest").glob("*.jpg"))) == 4
    assert ("vectors on http" in text) == bool(server)
    found = differences(nbformat.read(NOTEBOOK, as_version=4), fresh)
    assert not found, (
        "the committed outputs are not this code's: refresh them with `python -m tests.notebook_outputs`\n"
        + "\n".join(found)
    )
