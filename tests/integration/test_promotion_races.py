"""promote() against a real ``mlflow server``: two processes racing never leave the alias on the worse version, and
rejected credentials are an error, never "no champion, promoted".

Each race registers a fresh model whose ``champion`` (v1) is beaten by both v2 (better) and v3 (worse than v2), then
two long-lived worker processes promote v2 and v3 concurrently (released through their stdin: together, or one
inside the other's read-then-move window, in both orders). MLflow's registry has no compare-and-set on aliases;
whatever the interleaving, the alias must end on v2.

The dangerous interleaving is narrow (v3 reads the champion before v2 moves the alias, and moves it after): a few
milliseconds between two processes on one machine. So some races send one worker's requests through a TCP proxy that
delays each of them by :data:`LINK_DELAY_S` (a slow link to the server), which stretches its read-then-move window to
about a second, and release the other worker inside it: as soon as the slow worker's offer tag appears, which it
records just before reading the champion. Without reconciliation those races end on v3 (checked by disabling it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.promotion import ALREADY_CHAMPION, KEPT_CHAMPION, OFFER_TIME_TAG, PROMOTED, promote
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import REPO_ROOT
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer

pytestmark = pytest.mark.integration

# A worker: imports everything first, then for each command line {"name", "version", "delay"} says "ready", waits
# for "go", sleeps its delay and promotes; prints the decision (or the error) as one JSON line.
WORKER = """
import json
import sys
import time

import mlflow  # noqa: F401  (imported before the race, so the race is not an import race)

from airflow_kedro_mlflow.promotion import promote
from airflow_kedro_mlflow.tracking import TrackingConfig

tracking = TrackingConfig(sys.argv[1], max_retries=0)
tracking.client().search_registered_models(max_results=1)  # warm the HTTP session
for line in sys.stdin:
    command = json.loads(line)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    time.sleep(command["delay"])
    try:
        decision = promote(command["name"], command["version"], metric="accuracy", tracking=tracking)
        print(json.dumps(decision.to_xcom()), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""

#: Delay added to each request a worker on the slow link sends (a promotion makes about 7 requests).
LINK_DELAY_S = 0.2

#: (worker promoting v2, its delay, worker promoting v3, its delay, leader): "fast" workers talk to the server
#: directly, the "slow" one through the delaying proxy. Without a leader both are released at once; with one
#: ("v2"/"v3"), the other is released when the leader has recorded its offer, i.e. just before it reads the champion.
RACES = [
    ("fast", 0.0, "fast2", 0.0, None),
    ("fast", 0.0, "fast2", 0.02, None),
    ("fast", 0.02, "fast2", 0.0, None),
    ("fast", 0.0, "slow", 0.0, "v3"),  # v3 reads v1, v2 moves the alias, v3 moves it last: what reconciling is for
    ("fast", 0.25, "slow", 0.0, "v3"),
    ("slow", 0.0, "fast", 0.0, "v2"),  # v3 moves the alias while v2 is about to: v2 moves it last
    ("slow", 0.0, "fast", 0.25, "v2"),
]


class DelayingProxy:
    """A TCP proxy to the server that holds each chunk a client sends for ``delay`` seconds: a slow network link."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port, self.delay = target_port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


class Worker:
    """A promoting process that stays alive across races (importing MLflow takes seconds; a race takes ms)."""

    def __init__(self, tracking_uri: str) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "PYTHON"))}
        env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout's package, as the test process imports it
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, tracking_uri],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
        )  # fmt: skip

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"worker exited with {self.process.poll()}"
        return line.strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


@contextmanager
def workers(uris: dict[str, str]) -> Iterator[dict[str, Worker]]:
    """One worker process per name, talking to the server at that name's URI."""
    started = {name: Worker(uri) for name, uri in uris.items()}
    try:
        yield started
    finally:
        for worker in started.values():
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=60)


def register(client: MlflowClient, name: str, accuracy: float) -> str:
    experiment = client.get_experiment_by_name("promotion-races")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("promotion-races")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def wait_for_offer(client: MlflowClient, name: str, version: str, timeout: float = 60) -> None:
    """Wait until ``version``'s promotion has recorded its offer (it reads the champion right after)."""
    deadline = time.monotonic() + timeout
    while OFFER_TIME_TAG not in client.get_model_version(name, version).tags:
        assert time.monotonic() < deadline, f"version {version} recorded no offer within {timeout}s"
        time.sleep(0.01)


def test_racing_promotions_leave_the_alias_on_the_better_version(mlflow_server: MlflowServer) -> None:
    client = MlflowClient(mlflow_server.uri)
    proxy = DelayingProxy(mlflow_server.port, LINK_DELAY_S)
    wrong = []  # every race is run, so a failure shows all the interleavings that went wrong
    try:
        with workers({"fast": mlflow_server.uri, "fast2": mlflow_server.uri, "slow": proxy.uri}) as pool:
            for race, (better_by, better_delay, worse_by, worse_delay, leader) in enumerate(RACES):
                name = f"race_{race}"
                client.create_registered_model(name)
                client.set_registered_model_alias(name, "champion", register(client, name, 0.5))
                versions = {"v2": register(client, name, 0.9), "v3": register(client, name, 0.7)}
                racers = {"v2": (pool[better_by], better_delay), "v3": (pool[worse_by], worse_delay)}
                for role, (worker, delay) in racers.items():
                    worker.send(json.dumps({"name": name, "version": versions[role], "delay": delay}))
                assert [worker.read() for worker, _ in racers.values()] == ["ready", "ready"]

                order = list(racers) if leader is None else [leader, *(role for role in racers if role != leader)]
                for role in order:
                    racers[role][0].send("go")
                    if role == leader:
                        wait_for_offer(client, name, versions[role])
                decisions = [json.loads(worker.read()) for worker, _ in racers.values()]

                holder = str(client.get_registered_model(name).aliases["champion"])
                # v2 moved the alias, or found it already moved there by v3's reconciliation; v3 saw v2 already
                # (kept), gave the alias back when reconciling (kept), or finished before v2 started (promoted, then
                # beaten)
                outcome = [decision.get("decision", decision.get("error")) for decision in decisions]
                expected = outcome[0] in (PROMOTED, ALREADY_CHAMPION) and outcome[1] in (PROMOTED, KEPT_CHAMPION)
                if holder != versions["v2"] or not expected:
                    wrong.append((RACES[race], f"alias on v{holder}", outcome))
            for worker in pool.values():
                worker.close()
    finally:
        proxy.close()
    assert wrong == [], "\n".join(map(str, wrong))


def test_rejected_credentials_are_an_error_not_a_promotion(mlflow_auth_server: MlflowServer) -> None:
    admin = TrackingConfig(
        mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password=mlflow_auth_server.admin_password, max_retries=0
    )
    with admin.activate():
        client = admin.client()
        client.create_registered_model("auth_promotion")
        version = register(client, "auth_promotion", 0.9)
    wrong = TrackingConfig(mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password="wrong-pass", max_retries=0)

    with pytest.raises(MlflowConnectionError, match="answered HTTP 401") as info:
        promote("auth_promotion", version, metric="accuracy", tracking=wrong)

    assert "wrong-pass" not in str(info.value)
    with admin.activate():
        model = admin.client().get_registered_model("auth_promotion")
    assert model.aliases == {}  # nothing was promoted


def test_a_user_who_may_not_write_gets_an_error_not_a_promotion(mlflow_auth_server: MlflowServer) -> None:
    """A read-only user can read the champion but not move it: a 403 is an error, never a silent "kept"."""
    from mlflow.server.auth.client import AuthServiceClient

    admin = TrackingConfig(
        mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password=mlflow_auth_server.admin_password, max_retries=0
    )
    with admin.activate():
        client = admin.client()
        client.create_registered_model("read_only_promotion")
        version = register(client, "read_only_promotion", 0.9)
        AuthServiceClient(mlflow_auth_server.uri).create_user("reader", "reader-password-123")
    reader = TrackingConfig(mlflow_auth_server.uri, username="reader", password="reader-password-123", max_retries=0)

    with pytest.raises(MlflowConnectionError, match="answered HTTP 403"):
        promote("read_only_promotion", version, metric="accuracy", tracking=reader)

    with admin.activate():
        assert admin.client().get_registered_model("read_only_promotion").aliases == {}
