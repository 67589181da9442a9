"""What the training benchmarks share: the child processes' environment, measuring one, a local ``mlflow server``.

Children get a bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in the benchmark's temporary directory, filled by
the warm-up runs): an installed environment has compiled bytecode (pip compiles at install), while a tox or uv
environment may have none, and a child that compiles every module it imports measures the compiler, not the code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sample:
    """One child process: wall time (s), CPU time of the process (s), peak resident set size (MiB), its last line."""

    wall: float
    cpu: float
    peak_mib: float
    last_line: str


def child_env(root: Path, tracking_uri: str, package_root: Path) -> dict[str, str]:
    """Environment of a benchmark child: this checkout's package first, telemetry off, ``mlflow_default`` set."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")])),
        "PYTHONPYCACHEPREFIX": str(root / "pycache"),
        "AIRFLOW_HOME": str(root / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": tracking_uri}}),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Sample:
    """Run ``command`` to completion; its times and peak memory come from ``wait4`` (this child only)."""
    started = time.perf_counter()
    with log.open("w") as output:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({child.returncode}):\n{text[-4000:]}")
    lines = text.strip().splitlines()
    # Linux reports ru_maxrss in KiB.
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines[-1] if lines else "")


@contextmanager
def local_mlflow_server(root: Path, timeout: float = 180) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts) for the block; yield its URI."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "1"}
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    with (root / "server.log").open("ab") as log:
        server = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"mlflow server did not start: see {root / 'server.log'}") from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
