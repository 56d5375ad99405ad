"""The tutorial notebook run offline, and its outputs compared with the committed ones.

The notebook is committed with the outputs of an offline run (random, seeded ResNet50 weights; the
photos committed in `tests/data/`), so that a reader on GitHub sees every step's result. CI executes it
again (`tests/test_notebook.py`) and compares each cell's outputs with the committed ones: the same
kinds of output, and the same text once numbers with decimals (distances, timings), memory addresses
and the run's temporary folders are masked (in the cells tagged `varies`, only
the first line of each output is compared, every number masked). Progress
bars and warnings (stderr) are not kept.

Refresh the committed outputs after changing the notebook or what it calls:

    python -m tests.notebook_outputs
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "1_End_to_End_Milvus_Image_Similarity_Example.ipynb"
INJECTED = "injected-parameters"
WIDGET = "application/vnd.jupyter.widget-view+json"
"""The kind of output of a progress bar in Jupyter: not kept (it shows nothing on GitHub)."""
VARIES = "varies"
"""Tag of the cells whose results hang on close calls between float scores (copies found by the keypoint
check, an audit of random-weights vectors, a map), which a CPU with other vector instructions may tip:
only the first line of each of their outputs is compared, with every number masked."""
SERVER_CELL = "server"
"""Tag of the cell whose output depends on `MILVUS_URI` (a server or not): it must only not fail."""

OFFLINE = {
    "IMAGE_FOLDER": "../tests/data/photos",
    "PER_CLASS": 3,
    "QUERY_IMAGE": "../tests/data/samples/cat.jpg",  # the whole photo whose crops make the "cat" class
    "WEIGHTS": None,
    "MILVUS_URI": "../db/notebook-offline.db",
    "COLLECTION": "notebook_offline",
    "TOP_K": 4,
    "RESULTS_FOLDER": "../results/notebook-offline",
    "FIGURE_FILE": "../results/notebook-offline/figure.png",
}
"""The parameters of the offline run, as the committed notebook shows them (seen from `notebooks/`)."""

WRITTEN = ("MILVUS_URI", "RESULTS_FOLDER", "FIGURE_FILE")
"""Parameters naming what the run writes: a run puts them in a temporary folder."""


def source_notebook() -> nbformat.NotebookNode:
    """The committed notebook without its outputs and without the cell of the offline parameters."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = [c for c in notebook.cells if INJECTED not in c.metadata.get("tags", [])]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def _inject(notebook: nbformat.NotebookNode, values: dict[str, object]) -> None:
    """Papermill-style: add a cell with `values` right after the one tagged `parameters`."""
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "# The parameters of the offline run that made the outputs below (CI runs it the same way).\n"
    source += "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED]}))


def execute(work: Path, server_uri: str | None = None, timeout: int = 600) -> nbformat.NotebookNode:
    """Run the notebook offline with `OFFLINE`, writing under `work`; outputs show `OFFLINE`'s names.

    Args:
        work: An empty folder for the Lite file and the results.
        server_uri: A Milvus server for the server section (None skips it).
        timeout: Seconds a cell may take.

    Returns:
        The executed notebook: the injected cell shows `OFFLINE`, the outputs name `OFFLINE`'s folders
        and `..` for the repository, stderr (progress bars, warnings) dropped.
    """
    notebook = source_notebook()
    actual = dict(OFFLINE)
    for name in WRITTEN:  # "../db/x.db" is written as work/db/x.db, and shown as it was
        actual[name] = str(work / Path(str(OFFLINE[name])).relative_to(".."))
    _inject(notebook, actual)
    previous = os.environ.pop("MILVUS_URI", None)
    if server_uri:
        os.environ["MILVUS_URI"] = server_uri
    try:
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        os.environ.pop("MILVUS_URI", None)
        if previous is not None:
            os.environ["MILVUS_URI"] = previous
    shown = {str(work): ".."}
    shown[str(NOTEBOOK.parent / "..")] = ".."  # stored paths keep the `..` they were given
    shown[str(ROOT)] = ".."
    for cell in notebook.cells:
        if INJECTED in cell.metadata.get("tags", []):
            cell.source = cell.source.splitlines()[0] + "\n" + "\n".join(f"{k} = {v!r}" for k, v in OFFLINE.items())
        if cell.cell_type == "code":
            cell.outputs = [_with_names(o, shown) for o in cell.outputs if _kept(o)]
    notebook.metadata.pop("widgets", None)
    return notebook


def _kept(output: nbformat.NotebookNode) -> bool:
    """Whether an output is worth keeping: not stderr, not a progress bar's widget."""
    return output.get("name") != "stderr" and WIDGET not in output.get("data", {})


def _with_names(output: nbformat.NotebookNode, shown: dict[str, str]) -> nbformat.NotebookNode:
    """The output with each actual path replaced by the name shown (longest first)."""

    def rename(text: str) -> str:
        for actual in sorted(shown, key=len, reverse=True):
            text = text.replace(actual, shown[actual])
        return text

    if "text" in output:
        output["text"] = rename(output["text"])
    for mime, value in output.get("data", {}).items():
        if isinstance(value, str) and mime.startswith("text/"):
            output["data"][mime] = rename(value)
    return output


_DECIMALS = re.compile(r"-?\d+\.\d+(e-?\d+)?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_DURATION = re.compile(r"\b\d+ ?(s|ms|min)\b")
_ROW_ID = re.compile(r"\b\d{12,}\b")  # a row's id is made from its absolute path: it differs between checkouts
_SPACES = re.compile(r"[ \t]+")
_CUT_SHORT = re.compile(r"\S+\.\.\.(?=\s|$)")  # a path pandas cut short, at a length that depends on the checkout


def masked(text: str) -> str:
    """`text` with what differs between two runs of the same code masked: numbers with decimals (distances
    and timings vary in their last digits between CPUs), whole seconds, memory addresses, row ids and paths
    that pandas cut short (both depend on where the repository is checked out); runs of spaces as one.

    Example:
        >>> masked("distance 0.123456,  3 files in 2 s at 0x7f00ab, row 5070152837595043029 ../tests/da...")
        'distance <d>, 3 files in <t> at <addr>, row <id> <cut>'
    """
    text = _CUT_SHORT.sub("<cut>", _ROW_ID.sub("<id>", text))
    text = _DURATION.sub("<t>", _ADDRESS.sub("<addr>", _DECIMALS.sub("<d>", text)))
    return _SPACES.sub(" ", text)  # a table's columns are aligned to what was masked


_INTEGER = re.compile(r"\d+")


def _summary(cell: nbformat.NotebookNode) -> list[tuple[str, ...]]:
    """Each output of a code cell as (kind, mime types or stream, masked text)."""
    summary = []
    if VARIES in cell.metadata.get("tags", []):
        mask = lambda text: _INTEGER.sub("<n>", masked(text.partition("\n")[0]))  # noqa: E731
    else:
        mask = masked
    for output in cell.outputs:
        if output.output_type == "stream":
            summary.append(("stream", output.name, mask(output.text)))
        elif output.output_type == "error":
            summary.append(("error", output.ename, mask(output.evalue)))
        else:
            data = output.get("data", {})
            text = data.get("text/plain", "")
            summary.append((output.output_type, ",".join(sorted(data)), mask(text)))
    return summary


def differences(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """What differs between the committed outputs and a fresh run's, cell by cell (empty when they agree).

    Sources must be equal; outputs are compared as `_summary` gives them; the server cell must only not fail.
    """
    found = []
    cells = list(zip(committed.cells, fresh.cells, strict=False))
    if len(committed.cells) != len(fresh.cells):
        found.append(f"{len(committed.cells)} cells committed, {len(fresh.cells)} run")
    for n, (old, new) in enumerate(cells):
        if old.source != new.source:
            found.append(f"cell {n}: its source differs from the run's")
        elif old.cell_type == "code":
            before, after = _summary(old), _summary(new)
            if SERVER_CELL in old.metadata.get("tags", []):  # it runs only where MILVUS_URI names a server
                before, after = [], [a for a in after if a[0] == "error"]
            if before != after:
                found.append(f"cell {n} ({old.source.splitlines()[0][:60]!r}): committed {before} != run {after}")
    return found


def main() -> int:
    """Run the notebook offline and write it, with its outputs, over the committed one."""
    with tempfile.TemporaryDirectory() as work:
        notebook = execute(Path(work))
    for n, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        for output in cell.outputs:
            if "execution_count" in output:
                output["execution_count"] = n + 1
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK} with the outputs of an offline run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
