"""Helpers shared by the benchmark scripts: machine description, timing, result tables."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEST_PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "photos"


REPOSITORY = Path(__file__).resolve().parents[1]


def shown_path(path: str | os.PathLike) -> str:
    """A folder or file as a results table names it: relative to the repository (`tests/data/photos`,
    `../shared/data/imagenette-val`), or `$TMP/...` for a temporary folder, never a machine's own
    absolute path."""
    resolved = Path(path).resolve()
    for base, shown in ((REPOSITORY, ""), (REPOSITORY.parent, "../")):
        if resolved.is_relative_to(base):
            return shown + resolved.relative_to(base).as_posix()
    temporary = Path(os.environ.get("TMPDIR", "/tmp")).resolve()
    if resolved.is_relative_to(temporary):
        return "$TMP/" + resolved.relative_to(temporary).as_posix()
    return str(path)


def _shown_argument(argument: str) -> str:
    """A command-line argument for a table: paths through `shown_path`, the rest as given."""
    if argument.startswith("/") and not argument.startswith("//") and "://" not in argument:
        return shown_path(argument)
    return argument


def _shown_command(argv: Sequence[str]) -> str:
    """The command line for a table: paths through `shown_path`, shell-quoted (`$TMP/...` left bare)."""
    shown = [_shown_argument(argument) for argument in argv]
    return " ".join(a if a.startswith("$TMP/") and shlex.quote(a[1:]) == a[1:] else shlex.quote(a) for a in shown)


def default_images() -> Path:
    """The photos benchmarks read by default: the 3,925 Imagenette photos in `../shared/data` where
    that folder exists (our machines), else the 100 photos committed in `tests/data/photos`."""
    imagenette = SHARED_DATA / "imagenette-val"
    return imagenette if imagenette.is_dir() else TEST_PHOTOS


def versions(names: Sequence[str]) -> str:
    """`name version` pairs of the installed packages among `names`."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def version_in(python: str, package: str) -> str:
    """The version of `package` installed for another Python (another venv), or "" if it has none."""
    import subprocess

    return subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def params_label(params: dict, empty: str = "-") -> str:
    """Index or search parameters as the tables show them: `"nlist=1024, nprobe=32"`, or `empty` if none."""
    return ", ".join(f"{key}={value}" for key, value in params.items()) or empty


def machine() -> str:
    """CPU count, processor and accelerator (if JAX or PyTorch sees one)."""
    description = (
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    gpu = os.environ.get("BENCH_GPU_NAME")
    return f"{description}, {gpu}" if gpu else description


def model_and_photos(images: Path, count: int, batch_size: int, dtype: str) -> tuple[list[Path], Any, np.ndarray]:
    """The first `count` photos, a random-weights ResNet50 embedder compiled for `batch_size`,
    and the photos decoded in memory (the input of the raw-model baseline)."""
    import keras

    from utilities.embeddings import ResNet50Embedder
    from utilities.images.decoding import decode_for_model
    from utilities.images.finding import find_images

    if dtype != "float32":
        keras.mixed_precision.set_dtype_policy(dtype)
    paths = find_images(images)[:count]
    embedder = ResNet50Embedder(weights=None, batch_size=batch_size)
    decoded = np.stack([decode_for_model(p) for p in paths])
    embedder.embed_batch(decoded[:batch_size])  # compile before timing
    return paths, embedder, decoded


def best_of(function: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def write_table(
    name: str,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    notes: Sequence[str] = (),
    packages: Sequence[str] = (),
) -> Path:
    """Print a markdown table with its context and write it to `benchmarks/results/<name>.md`."""
    lines = [
        f"## {title}",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `python {_shown_command(sys.argv)}`",
        f"- machine: {machine()}",
        f"- versions: {versions(packages)}",
        "",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{name}.md"
    target.write_text(text, encoding="utf-8")
    return target


def group_rss_mb(pgid: int) -> tuple[float, float]:
    """Current and peak RSS summed over the processes of a process group (0, 0 if none)."""
    now = peak = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            text = (status.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        now += int(values.get("VmRSS", "0 kB").split()[0])
        peak += int(values.get("VmHWM", "0 kB").split()[0])
    return now / 1024, peak / 1024


def folder_mb(folder: Path) -> float:
    """Disk space the files under `folder` take (their allocated blocks), in MB."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_blocks * 512
        except OSError:
            continue
    return total / 1024 / 1024


def run_sampled(command: Sequence[str], stdout: Path, memory_cap_mb: float = 0.0) -> tuple[int, float, str]:
    """Run `command` in its own process group, its stdout into the file `stdout`, sampling the group's
    summed RSS every 0.2 s.

    Returns:
        The exit status, the group's peak RSS in MB, and what went wrong ("" if nothing): a group
        whose RSS passes `memory_cap_mb` (when given) is killed.
    """
    import subprocess

    with open(stdout, "w") as answer:
        process = subprocess.Popen(list(command), stdout=answer, start_new_session=True)
        peak, problem = 0.0, ""
        while process.poll() is None:
            peak = max(peak, group_rss_mb(process.pid)[0])
            if memory_cap_mb and peak > memory_cap_mb and not problem:
                os.killpg(process.pid, 9)
                problem = f"stopped at {peak / 1024:.1f} GB of RSS (cap {memory_cap_mb / 1024:.0f} GB)"
            time.sleep(0.2)
    if process.returncode and not problem:
        problem = f"exit status {process.returncode}"
    return process.returncode, peak, problem


def segment_rows(uri: str, collection: str) -> list[int]:
    """Rows of each segment a Milvus server has loaded for `collection`, smallest first (through
    pymilvus' `utility.get_query_segment_info`: MilvusClient has no call for it)."""
    import warnings

    from pymilvus import connections, utility

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ORM calls are deprecated, not yet replaced
        connections.connect(alias="benchmark-segments", uri=uri)
        try:
            return sorted(
                segment.num_rows for segment in utility.get_query_segment_info(collection, using="benchmark-segments")
            )
        finally:
            connections.disconnect("benchmark-segments")
