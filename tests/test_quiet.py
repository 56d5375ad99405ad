"""A quiet terminal: commands print what was asked for, not TensorFlow's start-up noise."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, run_cli
from utilities.quiet import NOISE, native_noise_filtered, without_noise

NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795998225.036549    3520 port.cc:153] oneDNN custom operations are on. You may see...\n"
    "I0000 00:00:1795999198.930693    6229 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow\n"
)
"""What TensorFlow 2.21 wrote to descriptor 2 on import on our machines, copied from a terminal."""

LEAKED = re.compile(r"absl|oneDNN|cpu_feature_guard|tensorflow|^[IWE]\d{4} ", re.IGNORECASE | re.MULTILINE)


def test_noise_lines_are_recognised_and_real_lines_kept() -> None:
    assert all(NOISE.match(line) for line in NOISE_LINES.splitlines())
    assert without_noise(NOISE_LINES + "error: the file is missing\n") == "error: the file is missing\n"
    assert without_noise("Traceback (most recent call last):\n") == "Traceback (most recent call last):\n"


def test_native_writes_are_filtered_and_the_rest_reaches_stderr(capfd: pytest.CaptureFixture) -> None:
    with native_noise_filtered():
        os.write(2, NOISE_LINES.encode())  # as C++ writes: to the descriptor, past sys.stderr
        os.write(2, b"a real native error\n")
    assert capfd.readouterr().err == "a real native error\n"
    with native_noise_filtered(enabled=False):
        os.write(2, NOISE_LINES.encode())
    assert capfd.readouterr().err == NOISE_LINES


@pytest.mark.slow
def test_index_search_and_info_print_only_what_was_asked(tmp_path: Path, photo_folder: Path) -> None:
    database = str(tmp_path / "quiet.db")
    # without TF_CPP_MIN_LOG_LEVEL, as a new user runs it (TensorFlow 2.21 ignores it for these lines anyway)
    env = {"TF_CPP_MIN_LOG_LEVEL": ""}
    common = ["--uri", database, "--weights", "none"]
    runs = {
        "index": run_cli("index", str(photo_folder), *common, "--json", env=env),
        "search": run_cli("search", str(SAMPLES / "cat.jpg"), *common, "--top-k", "3", "--json", env=env),
        "info": run_cli("info", "--uri", database, "--json", env=env),
    }
    for command, done in runs.items():
        assert done.returncode == 0, (command, done.stderr)
        assert not LEAKED.search(done.stderr), f"{command} printed start-up noise:\n{done.stderr}"
        json.loads(done.stdout)  # --json: stdout is one JSON document and nothing else
    assert json.loads(runs["index"].stdout)["indexed"] == 10
    assert len(json.loads(runs["search"].stdout)) == 3
    assert runs["index"].stderr == runs["search"].stderr == runs["info"].stderr == ""

    loud = run_cli("search", str(SAMPLES / "cat.jpg"), *common, "--verbose", env=env)
    assert loud.returncode == 0 and "building ResNet50" in loud.stderr  # --verbose shows the details
