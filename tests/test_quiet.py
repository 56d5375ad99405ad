"""A quiet terminal: commands print what was asked for, not TensorFlow's start-up noise."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, run_cli, run_python
from utilities.quiet import NOISE, native_noise_filtered, without_noise

NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795998225.036549    3520 port.cc:153] oneDNN custom operations are on. You may see...\n"
    "I0000 00:00:1795999198.930693    6229 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow\n"
)
"""What TensorFlow 2.21 wrote to descriptor 2 on import on our machines, copied from a terminal."""

ERROR_LINE = (
    "E0000 00:00:1796000000.120394    3520 cuda_executor.cc:1228] failed call to cuInit: CUDA_ERROR_NO_DEVICE: "
    "no CUDA-capable device is detected\n"
)
"""An absl error line: why a GPU goes unused. Never noise."""

FATAL_LINE = "F0000 00:00:1796000000.500000    3520 port.cc:99] Check failed: the test's own fatal error\n"

LEAKED = re.compile(r"absl|oneDNN|cpu_feature_guard|tensorflow|^[IW]\d{4} ", re.IGNORECASE | re.MULTILINE)
"""Start-up noise in a command's stderr (absl's E and F lines are errors, and may show)."""


def test_noise_lines_are_recognised_and_real_lines_kept() -> None:
    assert all(NOISE.match(line) for line in NOISE_LINES.splitlines())
    assert without_noise(NOISE_LINES + "error: the file is missing\n") == "error: the file is missing\n"
    assert without_noise("Traceback (most recent call last):\n") == "Traceback (most recent call last):\n"
    assert without_noise(NOISE_LINES + ERROR_LINE + FATAL_LINE) == ERROR_LINE + FATAL_LINE


def test_native_writes_are_filtered_and_the_rest_reaches_stderr_as_it_comes(capfd: pytest.CaptureFixture) -> None:
    with native_noise_filtered():
        os.write(2, NOISE_LINES.encode())  # as C++ writes: to the descriptor, past sys.stderr
        os.write(2, ERROR_LINE.encode())
        deadline = time.monotonic() + 10
        shown = ""
        while ERROR_LINE not in shown and time.monotonic() < deadline:  # before the block ends, not held back
            time.sleep(0.05)
            shown += capfd.readouterr().err
        assert shown == ERROR_LINE
        os.write(2, b"a real native error\nno newline at the end")
    assert capfd.readouterr().err == "a real native error\nno newline at the end"
    with native_noise_filtered(enabled=False):
        os.write(2, NOISE_LINES.encode())
    assert capfd.readouterr().err == NOISE_LINES


def test_without_a_python_to_run_the_helper_a_thread_filters(
    capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "")
    with native_noise_filtered():
        os.write(2, (NOISE_LINES + ERROR_LINE).encode())
    assert capfd.readouterr().err == ERROR_LINE


def test_a_line_written_before_native_code_aborts_reaches_the_terminal() -> None:
    program = (
        "import os\n"
        "from utilities.quiet import native_noise_filtered\n"
        "with native_noise_filtered():\n"
        f"    os.write(2, {NOISE_LINES.encode()!r})\n"
        f"    os.write(2, {FATAL_LINE.encode()!r})\n"
        "    os.write(2, b'*** Check failure stack trace: ***')\n"  # no newline: written at the pipe's end
        "    os.abort()\n"  # as absl's LOG(FATAL) does, right after writing
    )
    for _ in range(3):  # a helper that lost the race would lose it some of the time
        died = run_python(program, timeout=60)
        assert died.returncode == -signal.SIGABRT
        assert died.stderr == FATAL_LINE + "*** Check failure stack trace: ***", died.stderr


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
