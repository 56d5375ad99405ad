"""The audit on Milvus Lite: copies across splits (real photos, ResNet50 with random weights, the keypoint
check), misfiled images and outliers (synthetic clusters of stored vectors: those checks read only the
vectors), pixel issues of generated images, the layouts, and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.conftest import SAMPLES
from tests.images_factory import gradient
from utilities.audit.auditor import audit_collection
from utilities.audit.quality import measure_file
from utilities.audit.splits import Layout, Place, find_layout
from utilities.cli import main
from utilities.embeddings import embedder_from_callable
from utilities.engine import ImageSearchEngine
from utilities.ids import stored_path

LOW_THRESHOLD = 0.3
"""Random-weights vectors say little: let nearly every pair through, so that the keypoint check decides."""

CLASSES = ("cat", "dog", "fish")
DIMENSION = 16


def _vector_engine(uri: str, name: str) -> ImageSearchEngine:
    """An engine that stores `DIMENSION`-d vectors (its model is never run)."""
    model = embedder_from_callable(lambda batch: batch.reshape(len(batch), -1)[:, :DIMENSION], dimension=DIMENSION)
    return ImageSearchEngine(uri, collection_name=name, embedder=model, progress=False)


@pytest.fixture
def clusters(tmp_path: Path, backend: str, collection_name: str) -> ImageSearchEngine:
    """Three well-separated classes in train and test, a dog's vector filed under train/cat, and one
    vector far from every class filed under train/fish (no files: only vectors are stored); on Lite and
    on the server, where the neighbours come from Milvus' searches, not from a scan."""
    rng = np.random.default_rng(7)
    centres = np.eye(DIMENSION, dtype=np.float32)[: len(CLASSES)] * 10
    paths, vectors = [], []
    for split, count in (("train", 12), ("test", 4)):
        for number, name in enumerate(CLASSES):
            for n in range(count):
                paths.append(f"{tmp_path}/data/{split}/{name}/{name}_{n:02d}.jpg")
                vectors.append(centres[number] + rng.normal(scale=0.5, size=DIMENSION))
    paths += [f"{tmp_path}/data/train/cat/misfiled.jpg", f"{tmp_path}/data/train/fish/odd.jpg"]
    vectors += [centres[1] + rng.normal(scale=0.5, size=DIMENSION), -np.ones(DIMENSION) * 4]
    engine = _vector_engine(backend, collection_name)
    engine.insert_vectors(paths, np.asarray(vectors, dtype=np.float32))
    yield engine
    engine.drop()
    engine.close()


def test_a_misfiled_image_is_the_top_label_error_with_its_true_class(clusters: ImageSearchEngine) -> None:
    report = audit_collection(clusters, verify=False, check_quality=False)
    top = report.label_errors[0]
    assert top.path.endswith("/train/cat/misfiled.jpg") and (top.folder, top.suggested) == ("cat", "dog")
    assert top.score > 0.9
    assert all(error.score < top.score for error in report.label_errors[1:])
    assert set(report.cuts["label_errors"]["thresholds"]) == set(CLASSES)


def test_a_vector_far_from_every_class_is_the_top_outlier(clusters: ImageSearchEngine) -> None:
    report = clusters.audit(verify=False, check_quality=False)  # the engine's verb: the same audit
    assert report.outliers[0].path.endswith("/train/fish/odd.jpg")
    assert report.outliers[0].score > report.cuts["outliers"]["score_cut"]
    assert not any(outlier.path.endswith("misfiled.jpg") for outlier in report.outliers)  # it sits on a class
    assert report.splits == {"train": 38, "test": 12} and report.classes == 3 and report.rows == 50


@pytest.fixture
def leaky(tmp_path: Path, embedder, backend: str, collection_name: str) -> tuple[ImageSearchEngine, dict[str, Path]]:
    """Different photos in test and train, then a byte copy and an edited copy (cropped, resized) of two
    test photos put in train; indexed with ResNet50's random weights."""
    root = tmp_path / "data"
    samples = sorted(SAMPLES.glob("*.jpg"))
    files: dict[str, Path] = {}
    for split, chosen in (("test", samples[:3]), ("train", samples[3:])):
        for sample in chosen:
            (root / split / sample.stem).mkdir(parents=True)
            files[f"{split}/{sample.stem}"] = Path(shutil.copy2(sample, root / split / sample.stem))
    files["exact"] = Path(shutil.copy2(samples[0], root / "train" / samples[3].stem / "copy.jpg"))
    image = Image.open(samples[1]).convert("RGB")
    width, height = image.size
    edited = image.crop((width // 10, height // 12, width - width // 20, height - height // 10))
    files["edited"] = root / "train" / samples[4].stem / "edited.jpg"
    edited.resize((edited.width * 2 // 3, edited.height * 2 // 3)).save(files["edited"], quality=80)
    engine = ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, progress=False)
    assert engine.index_folder(root, save_mapping=False).indexed == 8
    yield engine, files
    engine.drop()
    engine.close()


def test_byte_and_edited_copies_across_splits_are_verified_leaks(leaky) -> None:
    engine, files = leaky
    report = audit_collection(engine, threshold=LOW_THRESHOLD, workers=1)
    samples = sorted(SAMPLES.glob("*.jpg"))
    found = {(leak.a, leak.b): leak for leak in report.leaks}
    exact = found.pop((stored_path(files[f"test/{samples[0].stem}"]), stored_path(files["exact"])))
    near = found.pop((stored_path(files[f"test/{samples[1].stem}"]), stored_path(files["edited"])))
    assert (exact.kind, exact.cosine, exact.verified) == ("exact", 1.0, True)
    assert (near.kind, near.verified) == ("near", True) and near.cosine >= LOW_THRESHOLD
    assert found == {}  # the other photos look alike to random weights, and the check turned them down
    assert report.cuts["leaks"]["rejected"] > 0 and report.leaks[0] is exact
    galaxies = stored_path(files["train/galaxies"])  # the Hubble deep field: a dark photo indeed
    assert {issue.path: issue.issues for issue in report.quality} == {galaxies: ["dark"]}
    assert any("label errors not checked" in note for note in report.notes)  # one photo a class
    assert all(path.exists() for path in files.values())  # nothing moved or deleted


@pytest.mark.parametrize(
    ("name", "make", "issue"),
    [
        ("black", lambda: Image.new("RGB", (200, 150)), "dark"),
        ("white", lambda: Image.new("RGB", (200, 150), "white"), "light"),
        ("grey", lambda: Image.new("RGB", (200, 150), (128, 128, 128)), "low_information"),
        ("small", lambda: gradient(20, 20, 1), "tiny"),
        ("banner", lambda: gradient(600, 150, 2), "odd_aspect"),
        ("blurred", lambda: Image.open(SAMPLES / "cat.jpg").filter(ImageFilter.GaussianBlur(8)), "blurry"),
    ],
)
def test_pixel_issues_are_named(tmp_path: Path, name: str, make, issue: str) -> None:
    path = tmp_path / f"{name}.png"
    make().save(path)
    severities = measure_file(path).severities()
    assert issue in severities
    if name in ("white", "grey"):
        assert "dark" not in severities and "blurry" not in severities  # flat: no detail to call blurred


def test_real_photos_have_no_pixel_issues_but_the_deep_field_is_dark() -> None:
    found = {sample.stem: sorted(measure_file(sample).severities()) for sample in sorted(SAMPLES.glob("*.jpg"))}
    assert found == {name: ["dark"] if name == "galaxies" else [] for name in found}


def test_layouts_are_read_from_the_folders() -> None:
    assert find_layout(["/d/train/cat/a.jpg", "/d/test/dog/b.jpg"]) == Layout("/d", ("test", "train"))
    plain = find_layout(["/d/cat/a.jpg", "/d/dog/b.jpg", "/d/loose.jpg"])
    assert plain == Layout("/d", ())
    assert [plain.place(p) for p in ("/d/cat/x/a.jpg", "/d/loose.jpg")] == [Place(None, "cat"), Place(None, None)]
    named = find_layout(["/d/a/cat/1.jpg", "/d/b/cat/2.jpg", "/d/extra/cat/3.jpg"], splits=["a", "b"])
    assert [named.place(p) for p in ("/d/b/cat/2.jpg", "/d/extra/cat/3.jpg")] == [Place("b", "cat"), Place(None, None)]
    assert find_layout(["/d/train/cat/a.jpg"], root="/d").place("/d/train/cat/a.jpg") == Place("train", "cat")


def test_the_cli_prints_json_writes_the_csv_and_limits_only_what_it_prints(tmp_path: Path, capsys) -> None:
    engine = _vector_engine(str(tmp_path / "cli.db"), "cli")
    rng = np.random.default_rng(3)
    paths = [f"{tmp_path}/{name}/{n}.jpg" for name in CLASSES for n in range(8)] + [f"{tmp_path}/cat/far.jpg"]
    centres = np.repeat(np.eye(DIMENSION, dtype=np.float32)[:3] * 10, 8, axis=0)
    engine.insert_vectors(paths, np.vstack([centres + rng.normal(scale=0.5, size=centres.shape), -np.ones(16)]))
    engine.close()
    common = ["audit", "--uri", str(tmp_path / "cli.db"), "--collection", "cli", "--no-quality", "--no-verify"]
    assert main([*common, "--json", "--top", "1", "--csv", str(tmp_path / "audit.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"leaks", "label_errors", "outliers", "quality", "cuts", "counts"} <= set(printed)
    assert printed["outliers"] == [{"path": f"{tmp_path}/cat/far.jpg", "score": printed["outliers"][0]["score"]}]
    assert printed["splits"] == {} and any("leaks not checked" in note for note in printed["notes"])
    with (tmp_path / "audit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(printed["counts"].values()) >= 1  # every item, whatever --top printed
    assert main(common) == 0
    assert "outliers: " in capsys.readouterr().out
