"""A private Milvus standalone server for fault tests: started, killed and restarted at will.

It runs beside the shared server of `.ci/run` on other ports (proxy, embedded etcd client
and peer ports), with authentication on, in its own process group, so a test can
SIGKILL it without touching anything else. Never killed by name.

The first start goes through the `milvus-server` launcher from the PyPI `milvus`
package, which unpacks the real binary and writes its config into the data folder.
Restarts run that binary directly with the same config: the launcher probes its ports
by binding them without SO_REUSEADDR, which fails for a minute after a kill while the
old connections sit in TIME_WAIT (the Milvus binary itself rebinds at once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.ports import free_port

ROOT_TOKEN = "root:Milvus"
"""The default root credentials of a fresh Milvus with authorization enabled."""


def _bindable(port: int) -> bool:
    """Whether the launcher's own check (bind without SO_REUSEADDR) would accept this port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _configured_proxy_port(config: Path) -> int:
    """The proxy port the launcher wrote into milvus.yaml (it moves on silently if its pick is taken)."""
    in_proxy = False
    for line in config.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            in_proxy = line.startswith("proxy:")
        elif in_proxy and line.startswith("  port:"):
            return int(line.split(":", 1)[1].split("#")[0])
    raise RuntimeError(f"no proxy port in {config}")


class PrivateMilvusServer:
    """One Milvus 2.3 standalone in `data_dir`, listening on `proxy_port`.

    Args:
        data_dir: Where its data, config and logs go (a fresh folder).
        proxy_port: The gRPC port clients use.
        etcd_port: Client port of its embedded etcd (its peer port is the next one).
        authorization: Require a token (`ROOT_TOKEN` works).
    """

    def __init__(self, data_dir: Path, proxy_port: int = 19541, etcd_port: int = 2389, authorization: bool = True):
        # A port a killed server used sits in TIME_WAIT for a minute: start from the first free one.
        proxy_port = next(port for port in range(proxy_port, proxy_port + 50) if _bindable(port))
        self.data_dir = Path(data_dir)
        self.proxy_port = proxy_port
        self.etcd_port = etcd_port
        self.authorization = authorization
        self.process: subprocess.Popen | None = None
        self.etcd_config = self.data_dir.parent / f"{self.data_dir.name}-etcd.yaml"

    @property
    def uri(self) -> str:
        """The URI clients connect to."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def token(self) -> str:
        """A token it accepts."""
        return ROOT_TOKEN if self.authorization else ""

    def _environment(self) -> dict[str, str]:
        peer = self.etcd_port + 1
        self.etcd_config.write_text(
            f"listen-client-urls: http://localhost:{self.etcd_port}\n"
            f"advertise-client-urls: http://localhost:{self.etcd_port}\n"
            f"listen-peer-urls: http://localhost:{peer}\n"
            f"initial-advertise-peer-urls: http://localhost:{peer}\n"
            f"initial-cluster: default=http://localhost:{peer}\n"
        )
        # Milvus maps ETCD_CONFIG_PATH to etcd.config.path: the embedded etcd's own ports.
        # COMMON_SESSION_TTL: a killed server leaves its sessions in etcd until they expire, and a
        # restarted one waits for that before it serves loaded collections (30 s by default).
        return {**os.environ, "ETCD_CONFIG_PATH": str(self.etcd_config), "COMMON_SESSION_TTL": "10"}

    def start(self, timeout: float = 120.0) -> None:
        """Start it (first time through the launcher, then the binary) and wait until it answers."""
        assert self.process is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        environment = self._environment()
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115 - kept by the child
        binary = self.data_dir / "bin" / "milvus"
        if binary.exists() and (self.data_dir / "configs" / "milvus.yaml").exists():
            environment.update(
                DEPLOY_MODE="STANDALONE",
                METRICS_PORT=str(free_port()),
                MILVUS_RUN_DIR=str(self.data_dir / "run"),
                LD_LIBRARY_PATH=f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            )
            command = [str(binary), "run", "standalone"]
        else:
            launcher = Path(sys.executable).with_name("milvus-server")
            command = [
                str(launcher),
                "--data",
                str(self.data_dir),
                "--proxy-port",
                str(self.proxy_port),
                "--etcd-port",
                str(self.etcd_port),
                "--authorization-enabled",
                "true" if self.authorization else "false",
            ]
        self.process = subprocess.Popen(
            command,
            cwd=self.data_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed as a group, never by name
        )
        try:
            config = self.data_dir / "configs" / "milvus.yaml"
            waited = time.monotonic()
            while not config.exists() and time.monotonic() - waited < 30:
                time.sleep(0.2)
            self.proxy_port = _configured_proxy_port(config)
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float) -> float:
        """Wait until a client can list collections; returns the seconds waited."""
        from pymilvus import MilvusClient

        started = time.monotonic()
        quiet = logging.getLogger("pymilvus")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            while time.monotonic() - started < timeout:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"Milvus server in {self.data_dir} exited with {self.process.returncode}")
                try:
                    client = MilvusClient(uri=self.uri, token=self.token, timeout=2)
                    client.list_collections()
                    client.close()
                    return time.monotonic() - started
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.5)
        finally:
            quiet.setLevel(level)
        raise TimeoutError(f"Milvus server in {self.data_dir} did not answer on {self.uri} within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL its whole process group (as a crash or an OOM kill would) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def restart(self, timeout: float = 120.0) -> None:
        """Kill (if running) and start again on the same data."""
        self.kill()
        self.start(timeout)
