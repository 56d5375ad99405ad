from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utilities.ids import stored_path
from utilities.images.decoding import decode_for_model
from utilities.indexing.pipeline import index_folder
from utilities.milvus.collection import ImageCollection
from utilities.search import hits_to_frame, search_images


@pytest.fixture
def indexed(store: ImageCollection, embedder, photo_folder: Path) -> tuple[ImageCollection, list[Path]]:
    index_folder(photo_folder, store, embedder, progress=False)
    return store, sorted(photo_folder.rglob("*.jpg"))


def test_search_by_path_pil_and_vector_agree(indexed, embedder) -> None:
    store, photos = indexed
    by_path = search_images(store, photos[2], embedder, top_k=4)
    by_image = search_images(store, Image.open(photos[2]), embedder, top_k=4)
    vector = embedder.embed_batch(np.stack([decode_for_model(photos[2])]))[0]
    by_vector = search_images(store, vector, top_k=4)
    assert list(by_path.columns) == ["rank", "id", "path", "distance", "score"]
    assert by_path["path"].tolist() == by_vector["path"].tolist()
    assert by_image.loc[0, "path"] == stored_path(photos[2])
    assert by_path["distance"].is_monotonic_increasing


def test_several_queries_get_a_query_column(indexed, embedder) -> None:
    store, photos = indexed
    results = search_images(store, [photos[0], photos[7]], embedder, top_k=2)
    assert list(results.columns)[0] == "query" and len(results) == 4
    firsts = results[results["rank"] == 1]
    assert firsts["path"].tolist() == [stored_path(photos[0]), stored_path(photos[7])]


def test_top_k_must_be_positive(indexed, embedder) -> None:
    store, photos = indexed
    with pytest.raises(ValueError, match="top_k"):
        search_images(store, photos[0], embedder, top_k=0)


def test_hits_to_frame_turns_cosine_scores_into_distances() -> None:
    hits = [
        [{"id": 1, "distance": 0.9, "entity": {"path": "/a"}}, {"id": 2, "distance": 0.5, "entity": {"path": "/b"}}]
    ]
    frame = hits_to_frame(hits, "COSINE", ["q"])
    assert frame["distance"].round(6).tolist() == [0.1, 0.5]
    assert hits_to_frame(hits, "L2", ["q"])["distance"].tolist() == [0.9, 0.5]
