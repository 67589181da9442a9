"""Start and stop real servers for the integration and end-to-end tiers.

Every server binds 127.0.0.1 on a free port, runs in its own process group (so its workers die with it) and is
stopped by whoever started it. Nothing here is a fake: the tests talk to the same ``mlflow server`` users run.
"""

from __future__ import annotations

import http.server
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

MLFLOW_ADMIN_USER = "admin"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status counts: the server is up), or fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{_tail(log)}")


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class MlflowServer:
    """A real ``mlflow server`` (sqlite backend, proxied artifacts in its own directory), optionally with basic auth.

    ``stop()`` then ``start()`` brings the same server back on the same port with the same stores, which the fault
    tests use to simulate an outage.
    """

    root: Path
    auth: bool = False
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(16), repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        """Tracking URI without credentials."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self, timeout: float = 180) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        args = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        if self.auth:
            ini = self.root / "auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\n"
                f"admin_username = {MLFLOW_ADMIN_USER}\n"
            )
            env.update(
                MLFLOW_AUTH_CONFIG_PATH=str(ini),
                MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                MLFLOW_FLASK_SERVER_SECRET_KEY="airflow-kedro-mlflow-tests",
            )
            args += ["--app-name", "basic-auth"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_http(f"{self.uri}/health", timeout, self.process, self.log_path)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None

    def client_env(self) -> dict[str, str]:
        """Environment for an MLflow client process that should talk to this server (credentials included)."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if self.auth:
            env.update(MLFLOW_TRACKING_USERNAME=MLFLOW_ADMIN_USER, MLFLOW_TRACKING_PASSWORD=self.admin_password)
        return env

    def airflow_conn_uri(self) -> str:
        """The ``AIRFLOW_CONN_MLFLOW_DEFAULT`` value for this server (login/password when auth is on)."""
        if self.auth:
            return f"mlflow://{MLFLOW_ADMIN_USER}:{self.admin_password}@127.0.0.1:{self.port}"
        return f"mlflow://127.0.0.1:{self.port}"


class RecordingMlflowServer:
    """A loopback HTTP server answering MLflow's experiments search and recording each request's Authorization header.

    It stands for "another MLflow server" that project code may talk to during a run: credentials must never reach it.
    With another ``status`` it stands for a server that answers but refuses every request (e.g. a proxy path that is
    not MLflow's).
    """

    def __init__(self, status: int = 200) -> None:
        self.authorizations: list[str | None] = []
        recorded = self.authorizations

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorded.append(self.headers.get("Authorization"))
                body = b'{"experiments": []}' if status == 200 else b"<html>Not an MLflow endpoint</html>"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
