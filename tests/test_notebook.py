"""Execute the tutorial notebook top to bottom, offline, with its parameters overridden."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PHOTOS, ROOT, SAMPLES

NOTEBOOK = ROOT / "notebooks" / "1_End_to_End_Milvus_Image_Similarity_Example.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells and all(not c.outputs and c.execution_count is None for c in code_cells)
    assert "parameters" in code_cells[0].metadata.get("tags", [])


def inject_parameters(notebook: nbformat.NotebookNode, values: dict[str, object]) -> None:
    """Papermill-style: add a cell right after the one tagged `parameters`."""
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


@pytest.mark.slow
def test_notebook_runs_offline_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    query = SAMPLES / "cat.jpg"  # the whole photo whose crops make the "cat" class: not in the collection
    inject_parameters(
        notebook,
        {
            "IMAGE_FOLDER": str(PHOTOS),
            "PER_CLASS": 3,
            "QUERY_IMAGE": str(query),
            "WEIGHTS": None,
            "MILVUS_URI": str(tmp_path / "notebook.db"),
            "COLLECTION": "notebook_test",
            "TOP_K": 4,
            "RESULTS_FOLDER": str(tmp_path / "results"),
            "FIGURE_FILE": str(tmp_path / "figure.png"),
        },
    )
    server = os.environ.get("MILVUS_TEST_SERVER_URI")
    if server:
        monkeypatch.setenv("MILVUS_URI", server)  # also run the server section
    else:
        monkeypatch.delenv("MILVUS_URI", raising=False)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "(2048,)" in outputs and "(30, 2048)" in outputs
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    assert len(list((tmp_path / "results" / "nearest").glob("*.jpg"))) == 4
    assert ("vectors on http" in outputs) == bool(server)
    nbformat.write(notebook, tmp_path / "executed.ipynb")
