"""The audit against a ground truth made by code, beside cleanvision and cleanlab on the same files and vectors.

The set (`benchmarks/audit_set.py`): the Imagenette photos of `../shared/data/imagenette-val` (or, with
`--quick` or without that folder, the 100 committed photos of `tests/data/photos`) laid out as
`train/<class>/` and `test/<class>/`, with byte and edited copies of test photos put in train (leaks),
train photos moved to a wrong class folder (label errors), dark, overexposed, blurred, near-uniform,
tiny and banner-shaped versions of photos (quality), and drawn charts, text pages and patterns in class
folders (outliers).

For each embedder the set is indexed into a Milvus Lite file (or `--server-uri`) and `audit_collection`
(what `engine.audit()` runs) audits it; each list is scored against the truth: precision and recall, the
share of the real label errors whose suggested class is right, and the share of the outlier list's top N
that are planted off-domain or near-empty images (N = their count). Beside it, on the same files:
cleanvision's dark, light, blurry and low_information checks; on the same stored vectors: cleanlab's
`find_label_issues` on 5-fold out-of-fold logistic-regression probabilities, and Datalab's outlier
check. Time and the peak memory each step adds (the PSS of the process and its children, the Milvus Lite
server and worker processes included, sampled every 0.1 s) are measured for each.

Files planted as another problem (off-domain, quality) count neither for nor against the label-error
lists; every other file wrongly listed counts against precision, real photos included (a night photo
called dark is a false positive here). A leak is right when its two files show the same photo.

`--quick` (CI): the committed photos and ResNet50 with random weights; it fails (exit status 1) when a
figure falls under its floor in `QUICK_FLOORS`. cleanvision and cleanlab run when installed, else the
table says they were skipped.

The full run needs the venv of `benchmarks/pretrained.py` with `tensorflow-cpu` (for ResNet50),
`cleanvision`, `cleanlab[datalab]` and `scikit-learn` added.

Usage:
    python benchmarks/audit.py --quick
    /tmp/effvenv/bin/python benchmarks/audit.py --embedders efficientnet-lite0 resnet50-random
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.audit_set import QUALITY_ISSUES, Plan, Truth, build_set  # noqa: E402
from benchmarks.common import SHARED_DATA, TEST_PHOTOS, shown_path, write_table  # noqa: E402
from benchmarks.duplicates import make_embedder  # noqa: E402

QUICK_PLAN = Plan(exact_leaks=2, near_leaks=3, label_errors=5, per_quality=3, per_size=1, off_domain=4)
"""The planted problems of `--quick` (100 committed photos)."""

COMPARED_ISSUES = ("dark", "light", "blurry", "low_information")
"""The quality issues cleanvision also checks."""

QUICK_FLOORS = {
    "leaks exact precision": 1.0,
    "leaks exact recall": 1.0,
    "leaks near precision": 0.9,
    "leaks near recall": 0.6,
    "label errors precision": 0.2,
    "label errors recall": 0.6,
    "outliers top-N share": 0.4,
    "dark precision": 0.2,
    "dark recall": 1.0,
    "light precision": 0.9,
    "light recall": 1.0,
    "blurry precision": 0.9,
    "blurry recall": 0.6,
    "low_information precision": 0.9,
    "low_information recall": 1.0,
    "tiny recall": 1.0,
    "odd_aspect recall": 1.0,
}
"""Lowest figures `--quick` accepts. Measured (ResNet50 with random weights, seed 0, 2 cores, 2026-12-08):
leaks exact 1.000 / 1.000, near 1.000 / 0.667 (2 of 3; 74 listed: the committed photos of a class are
views of one photo, so every pair across splits is a copy); label errors 0.31-0.42 / 1.000 (three runs); outliers top-N
0.571; dark 0.273 / 1.000 (the Hubble deep field's views are dark), light, low_information, tiny and
odd_aspect 1.000 / 1.000, blurry 1.000 / 0.667 (the blurred deep field stays sharp-looking noise: dark)."""

PACKAGES = ["opencv-python-headless", "pymilvus", "milvus-lite", "cleanvision", "cleanlab", "scikit-learn"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the committed photos, random weights, floors (CI)")
    parser.add_argument("--count", type=int, default=0, help="source photos, spread over the classes (0: all)")
    parser.add_argument(
        "--embedders", nargs="+", choices=["resnet50-random", "efficientnet-lite0"], default=["resnet50-random"]
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the set (which photos, which edits)")
    parser.add_argument("--no-compare", action="store_true", help="skip cleanvision and cleanlab")
    parser.add_argument("--server-uri", default="", help="index into this server instead of a Lite file")
    parser.add_argument("--name", default="audit")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.embedders = ["resnet50-random"]
    return args


def class_sources(folder: Path, count: int) -> dict[str, list[Path]]:
    """The photos of each class folder under `folder`, `count` in all spread over them (0: all)."""
    from utilities.images.finding import find_images

    every = find_images(folder)
    chosen = every[:: max(1, len(every) // count)][:count] if count else every
    sources: dict[str, list[Path]] = {}
    for photo in chosen:
        sources.setdefault(Path(photo).parent.name, []).append(Path(photo))
    return sources


def _tree_pss_mb() -> float:
    """Proportional set size of this process and its descendants, in MB (from /proc): pages that forked
    workers share with their parent are counted once, not once a process as RSS would."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    total_kb = 0
    for pid in tree:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total_kb / 1024


@dataclass
class Cost:
    """Wall time and the peak memory a step added over what the process tree held when it began."""

    seconds: float = 0.0
    peak_added_mb: float = 0.0

    def cells(self) -> list[str]:
        """Seconds and MB as table cells."""
        return [f"{self.seconds:.1f}", f"{self.peak_added_mb:.0f}"]


@contextmanager
def measured() -> Iterator[Cost]:
    """Time a step and sample the memory (PSS) of the process tree every 0.1 s while it runs."""
    cost = Cost()
    start = _tree_pss_mb()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_pss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - began
        done.set()
        sampler.join()
        cost.peak_added_mb = max(peak[0], _tree_pss_mb()) - start


@dataclass
class Score:
    """Precision and recall of one list, with what they were counted from."""

    planted: int
    listed: int
    right: int
    found: int
    extra: str = ""
    top_share: float = 0.0

    @property
    def precision(self) -> float:
        return self.right / self.listed if self.listed else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    def cells(self) -> list[str]:
        return [str(self.planted), str(self.listed), f"{self.precision:.3f}", f"{self.recall:.3f}", self.extra]


def set_score(listed: set[str], planted: set[str], ignored: set[str] = frozenset()) -> Score:
    """Precision and recall of a listed set of files against the planted ones (`ignored` files not counted)."""
    counted = listed - ignored
    return Score(len(planted), len(counted), len(counted & planted), len(listed & planted))


def leak_scores(leaks: list[Any], truth: Truth) -> dict[str, Score]:
    """Exact and near leaks: right when the two files show the same photo; found when planted."""
    scores = {}
    for kind, planted in (("exact", truth.exact_leaks), ("near", set(truth.near_leaks))):
        pairs = {tuple(sorted((leak.a, leak.b))) for leak in leaks if leak.kind == kind}
        right = sum(truth.scene.get(a) == truth.scene.get(b) for a, b in pairs)
        found = len(pairs & {tuple(sorted(pair)) for pair in planted})
        scores[f"leaks {kind}"] = Score(len(planted), len(pairs), right, found)
    return scores


def label_score(suggested: dict[str, str], truth: Truth) -> Score:
    """Listed label errors (path to suggested class) against the moved files, and how often the suggestion
    is the true class."""
    score = set_score(set(suggested), set(truth.label_errors), truth.other_problems)
    real = [path for path in suggested if path in truth.label_errors]
    right = sum(suggested[path] == truth.label_errors[path] for path in real)
    score.extra = f"suggested class right: {right} / {len(real)}"
    return score


def outlier_score(ranked: list[str], listed: set[str], truth: Truth) -> Score:
    """The outlier list (`ranked`: most outlying first, every row; `listed`: past the cut) against the
    off-domain and near-empty files, with the share of the top N that are planted."""
    planted = truth.off_domain | truth.near_empty
    score = set_score(listed, planted)
    score.top_share = sum(path in planted for path in ranked[: len(planted)]) / max(1, len(planted))
    score.extra = f"top-N share: {score.top_share:.3f} (N = {len(planted)})"
    return score


def quality_scores(flagged: dict[str, set[str]], truth: Truth) -> dict[str, Score]:
    """Each issue's flagged files against the files planted with it. A file planted with another issue is
    not counted (a near-uniform image made from a dark photo is dark too); a real photo flagged is a false
    positive, and `extra` says how many were."""
    scores = {}
    for issue, files in flagged.items():
        others = set().union(*(planted for name, planted in truth.quality.items() if name != issue))
        scores[issue] = set_score(files, truth.quality[issue], others)
        scores[issue].extra = f"{len(files - others - truth.quality[issue] - truth.off_domain)} unplanted photos"
    return scores


@dataclass
class Run:
    """What one embedder's run measured."""

    embedder: str
    indexed: int = 0
    index_seconds: float = 0.0
    audit: Cost = field(default_factory=Cost)
    rejected: int = 0
    scores: dict[str, Score] = field(default_factory=dict)
    quality: dict[str, Score] = field(default_factory=dict)
    pixels: Cost = field(default_factory=Cost)
    others: list[list[str]] = field(default_factory=list)


def stored_vectors(store: Any) -> tuple[list[str], np.ndarray]:
    """Every stored row's path and unit vector, in the same order."""
    from utilities.audit.vectors import vector_pages

    paths = {record.id: record.path for page in store.iter_records() for record in page}
    ids, vectors = [], []
    for page_ids, page in vector_pages(store):
        ids += page_ids.tolist()
        vectors.append(page)
    return [paths[row] for row in ids], np.concatenate(vectors)


def run_audit(store: Any, truth: Truth, run: Run) -> None:
    """`audit_collection` on the indexed set, every list scored."""
    from utilities.audit import quality
    from utilities.audit.auditor import audit_collection

    with measured() as run.audit:
        report = audit_collection(store, progress=False)
    run.scores.update(leak_scores(report.leaks, truth))
    run.rejected = int(report.cuts.get("leaks", {}).get("rejected", 0))
    run.scores["label errors"] = label_score({e.path: e.suggested for e in report.label_errors}, truth)
    listed = [outlier.path for outlier in report.outliers]  # past the cut: a shorter list leaves the top N short
    run.scores["outliers"] = outlier_score(listed, set(listed), truth)
    flagged = {issue: {item.path for item in report.quality if issue in item.issues} for issue in QUALITY_ISSUES}
    run.quality = quality_scores(flagged, truth)
    with measured() as run.pixels:  # the pixel measures alone, as cleanvision's run is timed
        quality.measure_files(truth.files)


def run_cleanlab(store: Any, truth: Truth) -> list[list[str]]:
    """cleanlab's `find_label_issues` on 5-fold out-of-fold logistic-regression probabilities of the stored
    vectors, and Datalab's outlier check on them: table rows."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    paths, vectors = stored_vectors(store)
    folders = [Path(path).parent.name for path in paths]
    classes = sorted(set(folders))
    labels = np.array([classes.index(folder) for folder in folders])
    with measured() as cost:
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        probabilities = cross_val_predict(
            LogisticRegression(max_iter=1000), vectors, labels, cv=folds, method="predict_proba"
        )
        issues = find_label_issues(labels, probabilities)
    suggested = {paths[n]: classes[int(probabilities[n].argmax())] for n in np.flatnonzero(issues)}
    score = label_score(suggested, truth)
    rows = [["cleanlab `find_label_issues`", "label errors", *_tool_cells(score), *cost.cells()]]
    try:
        rows.append(_datalab_outliers(paths, vectors, labels, truth))
    except ImportError:  # Datalab needs the `datalab` extra (Hugging Face `datasets`)
        rows.append(["cleanlab Datalab outliers", "outliers", "skipped: pip install 'cleanlab[datalab]'", *[""] * 5])
        print(f"note: {rows[-1][2]}", file=sys.stderr)
    return rows


def _datalab_outliers(paths: list[str], vectors: np.ndarray, labels: np.ndarray, truth: Truth) -> list[str]:
    """Datalab's outlier check (nearest-neighbour distances of the features) as a table row."""
    from cleanlab import Datalab

    with measured() as cost:
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(features=vectors, issue_types={"outlier": {}})
        found = lab.get_issues("outlier")
    order = np.argsort(found["outlier_score"].to_numpy(), kind="stable")  # low score: outlying
    ranked = [paths[n] for n in order]
    listed = {paths[n] for n in np.flatnonzero(found["is_outlier_issue"].to_numpy())}
    return ["cleanlab Datalab outliers", "outliers", *_tool_cells(outlier_score(ranked, listed, truth)), *cost.cells()]


def _tool_cells(score: Score) -> list[str]:
    return [f"{score.precision:.3f}", f"{score.recall:.3f}", f"{score.listed}", score.extra]


def run_cleanvision(truth: Truth) -> tuple[dict[str, Score], Cost]:
    """cleanvision's dark, light, blurry and low_information checks on the set's files."""
    from cleanvision import Imagelab

    with measured() as cost:
        lab = Imagelab(filepaths=list(truth.files), verbose=False)
        lab.find_issues({issue: {} for issue in COMPARED_ISSUES}, verbose=False)
    issues = lab.issues
    flagged = {issue: {str(path) for path in issues.index[issues[f"is_{issue}_issue"]]} for issue in COMPARED_ISSUES}
    return quality_scores(flagged, truth), cost


def installed(module: str) -> bool:
    """Whether a module can be imported."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def index_and_audit(name: str, truth: Truth, uri: str, compare: bool) -> Run:
    """Index the set with one embedder (into `uri`), audit it, and run cleanlab on the same vectors."""
    from utilities.indexing.pipeline import index_folder
    from utilities.milvus.collection import ImageCollection

    embedder = make_embedder(name)
    run = Run(embedder.weights_label)
    store = ImageCollection.open(uri, name="bench_audit", dimension=embedder.dimension, reset=True)
    try:
        started = time.perf_counter()
        run.indexed = index_folder(truth.root, store, embedder, batch_size=32, progress=False).indexed
        run.index_seconds = time.perf_counter() - started
        run_audit(store, truth, run)
        if compare:
            run.others = run_cleanlab(store, truth)
    finally:
        store.drop()
        store.close()
    for name, score in {**run.scores, **run.quality}.items():  # what a long run found so far
        print(f"{run.embedder}: {name}: {score.cells()}", file=sys.stderr)
    return run


def check_floors(run: Run) -> list[str]:
    """The quick run's figures under their floors (`QUICK_FLOORS`), as sentences."""
    figures = {f"{name} precision": score.precision for name, score in {**run.scores, **run.quality}.items()}
    figures |= {f"{name} recall": score.recall for name, score in {**run.scores, **run.quality}.items()}
    figures["outliers top-N share"] = run.scores["outliers"].top_share
    return [
        f"{name} {figures[name]:.3f} is under its floor {floor:.3f}"
        for name, floor in QUICK_FLOORS.items()
        if figures[name] < floor
    ]


def _list_rows(runs: list[Run]) -> list[list[Any]]:
    """The first table: each embedder's lists, then its whole audit's cost."""
    rows = [[run.embedder, name, *score.cells()] for run in runs for name, score in run.scores.items()]
    for run in runs:
        cost = f"{run.audit.seconds:.1f} s, +{run.audit.peak_added_mb:.0f} MB"
        rows.append([run.embedder, "whole audit", *[""] * 4, f"{cost}; {run.rejected} near pairs turned down"])
    return rows


def _quality_rows(run: Run, cleanvision: tuple[dict[str, Score], Cost] | None) -> list[list[Any]]:
    """The second table: each pixel issue, the package's figures beside cleanvision's."""
    rows = []
    for issue, score in run.quality.items():
        theirs = cleanvision[0].get(issue) if cleanvision else None
        other = (
            [f"{theirs.precision:.3f}", f"{theirs.recall:.3f}", theirs.listed, theirs.extra] if theirs else ["-"] * 4
        )
        rows.append([issue, score.planted, f"{score.precision:.3f}", f"{score.recall:.3f}", score.listed, score.extra])
        rows[-1] += other
    return rows


def _tool_rows(runs: list[Run], cleanvision: tuple[dict[str, Score], Cost] | None) -> list[list[Any]]:
    """The third table: every tool's time and memory (and cleanlab's figures)."""
    rows = [
        [
            f"this package, `audit` ({run.embedder})",
            "all four lists",
            *[""] * 3,
            f"indexed in {run.index_seconds:.0f} s",
        ]
        + run.audit.cells()
        for run in runs
    ]
    rows.append(["this package, pixel measures alone", "quality", *[""] * 4, *runs[0].pixels.cells()])
    if cleanvision:
        rows.append(["cleanvision (4 checks)", "quality", *[""] * 4, *cleanvision[1].cells()])
    return rows + [[row[0], f"{row[1]} ({run.embedder})", *row[2:]] for run in runs for row in run.others]


def write_results(args: argparse.Namespace, truth: Truth, runs: list[Run], cleanvision: Any, notes: list[str]) -> None:
    """The three tables: the audit's lists per embedder, the quality issues beside cleanvision, and every
    tool's time and memory."""
    planted = (
        f"{len(truth.files)} files under train/ and test/ from {shown_path(args.source)}: "
        f"{len(truth.exact_leaks)} byte and {len(truth.near_leaks)} edited copies of test photos in train, "
        f"{len(truth.label_errors)} photos in a wrong class folder, {len(truth.off_domain)} drawn off-domain pictures, "
        + ", ".join(f"{len(files)} {issue}" for issue, files in truth.quality.items())
        + f" (seed {args.seed}); Milvus {'server' if args.server_uri else 'Lite'}, the audit's defaults"
    )
    write_table(
        args.name,
        "Dataset audit against a ground truth made by code",
        ["embedder", "list", "planted", "listed", "precision", "recall", "also"],
        _list_rows(runs),
        [planted, *notes],
        packages=PACKAGES,
    )
    _append(
        args.name,
        "Quality issues beside cleanvision (the same files)",
        ["issue", "planted", "precision", "recall", "listed", "of which", "cleanvision precision"]
        + ["cleanvision recall", "cleanvision listed", "of which"],
        _quality_rows(runs[0], cleanvision),
    )
    _append(
        args.name,
        "Time and peak memory of each tool",
        ["tool", "check", "precision", "recall", "listed", "also", "seconds", "peak MB added"],
        _tool_rows(runs, cleanvision),
    )
    _append(args.name, "The machine (`lscpu | head`)", [], [[line] for line in lscpu_head()])


def lscpu_head() -> list[str]:
    """The first 10 lines `lscpu` prints (none where it is missing)."""
    import subprocess

    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()[:10]
    except OSError:
        return []


def _append(name: str, title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print another table and append it to `results/<name>.md` (no header: `lscpu | head` as text)."""
    from benchmarks.common import RESULTS

    lines = ["", f"### {title}", ""]
    if header:
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    else:
        lines += ["```", *(str(row[0]) for row in rows), "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    with (RESULTS / f"{name}.md").open("a", encoding="utf-8") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    imagenette = SHARED_DATA / "imagenette-val"
    args.source = TEST_PHOTOS if args.quick or not imagenette.is_dir() else imagenette
    plan = QUICK_PLAN if args.source == TEST_PHOTOS else Plan()
    notes = []
    missing = [module for module in ("cleanvision", "cleanlab", "sklearn") if not installed(module)]
    if args.no_compare or missing:
        why = "--no-compare" if args.no_compare else f"{', '.join(missing)} not installed"
        notes.append(f"cleanvision and cleanlab skipped: {why} (pip install cleanvision==0.3.7 cleanlab==2.9.0)")
        print(f"note: {notes[-1]}", file=sys.stderr)
    compare = not notes
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        truth = build_set(
            class_sources(args.source, args.count), Path(scratch) / "set", plan, args.seed, args.source == TEST_PHOTOS
        )
        notes.append(f"set made in {time.perf_counter() - started:.0f} s")
        uris = {name: args.server_uri or f"{scratch}/{name}.db" for name in args.embedders}
        runs = [index_and_audit(name, truth, uris[name], compare) for name in args.embedders]
        cleanvision = run_cleanvision(truth) if compare else None
        write_results(args, truth, runs, cleanvision, notes)
    failures = check_floors(runs[0]) if args.quick else []
    for failure in failures:
        print(f"FLOOR: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
