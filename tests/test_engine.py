from __future__ import annotations

from pathlib import Path

import numpy as np

from utilities.catalog import load_mapping
from utilities.engine import ImageSearchEngine
from utilities.ids import stored_path


def test_end_to_end_with_the_facade(
    backend: str, collection_name: str, embedder, photo_folder: Path, tmp_path: Path
) -> None:
    engine = ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder, progress=False)
    engine.create_collection(reset=True)
    try:
        assert engine.embed_image(next(photo_folder.rglob("*.JPEG"))).shape == (2048,)
        report = engine.index_folder(photo_folder)
        assert report.indexed == 10 and engine.count() == 10
        mapping = load_mapping(engine.mapping_path)
        assert len(mapping) == 10 and set(mapping["path"]) == {stored_path(p) for p in photo_folder.rglob("*.JPEG")}
        precomputed = np.random.default_rng(1).random((3, 2048), dtype=np.float32)
        engine.insert_vectors([f"/precomputed/{i}.jpg" for i in range(3)], precomputed)
        engine.insert_vectors([f"/precomputed/{i}.jpg" for i in range(3)], precomputed)
        assert engine.count() == 13
        query = sorted(photo_folder.rglob("*.JPEG"))[5]
        results = engine.search(query, top_k=3)
        assert results.loc[0, "path"] == stored_path(query)
        copied = engine.copy_results(results, tmp_path / "nearest")
        assert copied[0].read_bytes() == query.read_bytes()
        figure = engine.plot(query, results, outfile=tmp_path / "plot.png")
        assert (
            tmp_path / "plot.png"
        ).stat().st_size > 1000 and figure._suptitle.get_text() == "ResNet50, random weights (seed 0)"
    finally:
        engine.store.drop()
        engine.store.close()
        engine.mapping_path.unlink(missing_ok=True)
