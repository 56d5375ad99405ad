from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import SAMPLES, class_photos
from utilities.plotting import plot_results


def results_for(k: int) -> pd.DataFrame:
    paths = [str(p) for p in class_photos(1)[:k]]
    return pd.DataFrame({"rank": range(1, k + 1), "path": paths, "distance": [i / 10 for i in range(k)]})


@pytest.mark.parametrize("k", [3, 8])
def test_query_and_k_neighbours_are_drawn_with_rank_and_distance(k: int, tmp_path: Path) -> None:
    query = sorted(SAMPLES.glob("*.jpg"))[-1]
    outfile = tmp_path / "plots" / f"k{k}.png"
    figure = plot_results(query, results_for(k), outfile=outfile, title="random weights")
    titles = [axis.get_title() for axis in figure.axes]
    assert len(figure.axes) == k + 1
    assert titles[0].startswith("query") and titles[2].startswith("#2  d=0.100")
    with Image.open(outfile) as saved:
        assert saved.size[0] > 200 and saved.size[1] > 100


def test_missing_result_file_is_drawn_as_a_placeholder(tmp_path: Path) -> None:
    results = pd.DataFrame({"rank": [1], "path": [str(tmp_path / "gone.jpg")], "distance": [0.0]})
    figure = plot_results(None, results)
    assert len(figure.axes) == 1
    assert figure.axes[0].texts[0].get_text() == "cannot load"
