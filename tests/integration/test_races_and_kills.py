"""modelify against a real `mlflow server` when tries race, die or lose the server: real processes, real SIGKILL.

One training run (``run_training``) is shared by the module; each test is another modelify task of it (its own
task identity, hence idempotency key, and registered model name), run the way Airflow runs tries: the same key, a
try number, in this process or in a child process started with :func:`modelify_child`. Nothing of MLflow is
patched: a try is killed with SIGKILL while it uploads, two tries start at the same moment behind a file barrier,
and the server fixture is stopped and started again (same port, same stores) for an outage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import MlflowServerUnavailableError, ModelRegistrationError
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.tracking.config import DEFAULT_MAX_RETRIES
from airflow_kedro_mlflow.tracking.tags import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    IDEMPOTENCY_TAG,
    MAP_INDEX_TAG,
    TASK_ID_TAG,
    TRY_NUMBER_TAG,
    idempotency_token,
)
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.servers import MlflowServer, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PROJECT = REPO_ROOT / "dags_examples" / "kedro_classifier"
EXPERIMENT = "races-and-kills"
ALIAS = "challenger"
CHILD_TIMEOUT_S = 600


# -- the tries -----------------------------------------------------------------------------------------------------


def modelify_child(spec_path: str) -> None:
    """Body of a child process: one modelify try, as the modelify operator runs it, described by a JSON spec.

    Heavy imports happen first; then the child says it is ready and waits for the ``go`` file, so that two racers
    start modelify at the same moment. The result (``ModelifyResult.to_xcom()``) is written to ``result``.
    """
    from airflow_kedro_mlflow.kedro_project import prepare_kedro_environment

    prepare_kedro_environment()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import kedro.framework.session  # noqa: F401  (imported before the barrier, see above)
    import mlflow.pyfunc  # noqa: F401

    from airflow_kedro_mlflow.modelify import modelify

    spec = json.loads(Path(spec_path).read_text())
    Path(spec["ready"]).touch()
    if spec["go"]:
        wait_until(lambda: Path(spec["go"]).exists(), CHILD_TIMEOUT_S, "the go file")
    training = TrainingResult.from_xcom(spec["training"])
    result = modelify(**modelify_kwargs(spec["tracking_uri"], training, spec, max_retries=spec["max_retries"]))
    Path(spec["result"]).write_text(json.dumps(result.to_xcom()))


def modelify_kwargs(tracking_uri: str, training: TrainingResult, task: dict[str, Any], **tracking: Any) -> dict:
    """modelify's arguments for one try of ``task`` (identity, try number, name), as the modelify operator sets them."""
    tracking.setdefault("max_retries", DEFAULT_MAX_RETRIES)
    return {
        "tracking": TrackingConfig(tracking_uri, **tracking),
        "training": training,
        "registered_model_name": task["registered_model_name"],
        "aliases": [ALIAS],
        "mlflow_tags": {**task["identity"], TRY_NUMBER_TAG: str(task["try_number"])},
        "idempotency_key": task["identity"],
        # every test modelifies the module's one training run: one model name per task (see refuse_taken_name)
        "log_model_kwargs": {"name": task["model_name"]},
    }


def modelify_try(server: MlflowServer, training: TrainingResult, task: dict[str, Any], try_number: int, **tracking):
    """One try of ``task`` in this process."""
    from airflow_kedro_mlflow.modelify import modelify

    return modelify(**modelify_kwargs(server.uri, training, {**task, "try_number": try_number}, **tracking))


@dataclass
class Child:
    """A modelify try running in its own process (stdout and stderr in ``log``)."""

    process: subprocess.Popen
    folder: Path

    @property
    def log(self) -> str:
        return (self.folder / "output.log").read_text(errors="replace")

    @property
    def ready(self) -> bool:
        return (self.folder / "ready").exists()

    def result(self) -> dict[str, Any]:
        assert self.process.wait(timeout=CHILD_TIMEOUT_S) == 0, self.log
        return json.loads((self.folder / "result.json").read_text())

    def failed(self) -> str:
        assert self.process.wait(timeout=CHILD_TIMEOUT_S) != 0, self.log
        return self.log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=60)


def start_child(
    folder: Path,
    server: MlflowServer,
    training: TrainingResult,
    task: dict[str, Any],
    try_number: int,
    *,
    go: Path | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> Child:
    folder.mkdir(parents=True)
    spec = {
        **task,
        "try_number": try_number,
        "tracking_uri": server.uri,
        "training": training.to_xcom(),
        "ready": str(folder / "ready"),
        "go": str(go) if go else None,
        "result": str(folder / "result.json"),
        "max_retries": max_retries,
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "KEDRO_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
    )
    code = "import sys; from tests.integration.test_races_and_kills import modelify_child; modelify_child(sys.argv[1])"
    with (folder / "output.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(folder / "spec.json")],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Child(process, folder)


def wait_until(condition, timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(interval)


# -- what the tries leave in MLflow --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> TrainingResult:
    """A real training run of the example project on the server; its local artifact files stay in place."""
    from airflow_kedro_mlflow.training import run_training

    project = tmp_path_factory.mktemp("races") / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    tracking = TrackingConfig(mlflow_server.uri, max_retries=DEFAULT_MAX_RETRIES)
    return run_training(project, tracking=tracking, experiment_name=EXPERIMENT)


@pytest.fixture
def task(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A modelify task of its own (the identity the operator derives from the task instance) and a model name."""
    base = re.sub(r"\W", "_", request.node.name)[:80]
    identity = {DAG_ID_TAG: "races", DAG_RUN_ID_TAG: f"manual__{base}", TASK_ID_TAG: "modelify", MAP_INDEX_TAG: "-1"}
    return {"identity": identity, "registered_model_name": f"races_{base}", "model_name": f"model_{base}"}


@pytest.fixture
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)


def token_of(task: dict[str, Any], training: TrainingResult) -> str:
    """The idempotency tag modelify writes for ``task`` (its key plus the training run, see modelify())."""
    return idempotency_token({**task["identity"], "training_run_id": training.run_id})


def logged_models(client: MlflowClient, training: TrainingResult, task: dict[str, Any]) -> dict[str, str]:
    """``{model_id: status}`` of the live (not deleted) logged models of the task's idempotency key."""
    token = token_of(task, training)
    models = client.search_logged_models(
        [training.experiment_id], filter_string=f"tags.`{IDEMPOTENCY_TAG}` = '{token}'"
    )
    return {model.model_id: str(model.status).rsplit(".", 1)[-1] for model in models}


def versions(client: MlflowClient, task: dict[str, Any]) -> list:
    return client.search_model_versions(f"name = '{task['registered_model_name']}'")


def run_state(client: MlflowClient, run_id: str) -> tuple[str, int, int | None]:
    info = client.get_run(run_id).info
    return info.status, info.start_time, info.end_time


def assert_one_model_and_one_version(client: MlflowClient, training: TrainingResult, task, result: Any) -> None:
    """Exactly one READY logged model and one version for the key; the alias points at it; it came from training."""
    model_id = result["model_id"] if isinstance(result, dict) else result.model_id
    version = result["version"] if isinstance(result, dict) else result.version
    assert logged_models(client, training, task) == {model_id: "READY"}
    (registered,) = versions(client, task)
    assert (str(registered.version), registered.run_id) == (version, training.run_id)
    assert registered.source == f"models:/{model_id}"
    assert registered.tags[IDEMPOTENCY_TAG] == token_of(task, training)
    assert str(client.get_model_version_by_alias(task["registered_model_name"], ALIAS).version) == version


# -- tests -----------------------------------------------------------------------------------------------------------


def test_modelify_leaves_the_training_run_untouched_and_links_the_model(training, mlflow_server, client, task):
    before = run_state(client, training.run_id)
    assert before[0] == "FINISHED"

    result = modelify_try(mlflow_server, training, task, try_number=1)

    assert run_state(client, training.run_id) == before
    assert result.run_id == training.run_id
    model = client.get_logged_model(result.model_id)
    assert str(model.status).endswith("READY")
    assert model.source_run_id == training.run_id
    outputs = client.get_run(training.run_id).outputs.model_outputs
    assert result.model_id in [output.model_id for output in outputs]
    with TrackingConfig(mlflow_server.uri).activate():
        assert mlflow.models.get_model_info(f"runs:/{training.run_id}/{task['model_name']}").model_id == result.model_id
    assert_one_model_and_one_version(client, training, task, result)
    # promotion compares the metrics of the version's run: the training run's, logged by the evaluate node
    version = client.get_model_version(task["registered_model_name"], result.version)
    assert set(client.get_run(version.run_id).data.metrics) >= {"accuracy", "f1"}


def test_modelify_killed_while_uploading_leaves_training_finished_and_the_retry_deletes_its_model(
    training, mlflow_server, client, task, tmp_path
):
    before = run_state(client, training.run_id)
    child = start_child(tmp_path / "try1", mlflow_server, training, task, try_number=1)
    try:
        # Kill at the first file of the model's upload: the logged model exists (PENDING), its files are half there.
        def upload_started() -> bool:
            assert child.process.poll() is None, child.log
            pending = [mid for mid, status in logged_models(client, training, task).items() if status == "PENDING"]
            return bool(pending) and any(_model_files(mlflow_server, training, pending[0]))

        wait_until(upload_started, CHILD_TIMEOUT_S, "modelify to start uploading the model")
        child.process.send_signal(signal.SIGKILL)
        child.process.wait(timeout=60)
    finally:
        child.stop()
    (killed,) = logged_models(client, training, task)
    assert logged_models(client, training, task) == {killed: "PENDING"}
    assert run_state(client, training.run_id) == before  # never resumed, so nothing to leave RUNNING

    result = modelify_try(mlflow_server, training, task, try_number=2)

    assert killed != result.model_id and not result.reused
    assert_one_model_and_one_version(client, training, task, result)
    assert run_state(client, training.run_id) == before


def test_two_tries_at_once_register_one_version(training, mlflow_server, client, task, tmp_path):
    go = tmp_path / "go"
    children = [start_child(tmp_path / f"racer{i}", mlflow_server, training, task, 1, go=go) for i in (1, 2)]
    try:
        wait_until(lambda: all(child.ready or child.process.poll() is not None for child in children), 300, "racers")
        go.touch()
        first, second = (child.result() for child in children)
    finally:
        for child in children:
            child.stop()

    # both logged a model of their own (neither found the other's finished): they really raced
    assert not first["reused"] and not second["reused"]
    for key in ("version", "model_id", "model_uri", "run_id"):
        assert first[key] == second[key], key
    assert_one_model_and_one_version(client, training, task, first)


def test_server_down_while_a_try_cleans_up_the_next_try_still_cleans_up(
    training, mlflow_server, client, task, tmp_path
):
    before = run_state(client, training.run_id)
    child = start_child(tmp_path / "try1", mlflow_server, training, task, try_number=1, max_retries=0)
    try:

        def logging_started() -> bool:
            assert child.process.poll() is None, child.log
            return "PENDING" in logged_models(client, training, task).values()

        wait_until(logging_started, CHILD_TIMEOUT_S, "modelify to create its logged model")
        mlflow_server.stop()
        log = child.failed()
        # try 2 starts while the server is still down: it fails fast, before any side effect
        started = time.monotonic()
        with pytest.raises(MlflowServerUnavailableError, match="Cannot reach the MLflow tracking server"):
            modelify_try(mlflow_server, training, task, try_number=2, max_retries=0)
        assert time.monotonic() - started < 60
    finally:
        child.stop()
        mlflow_server.start()
    assert "Could not delete logged model" in log, log  # the failed try's cleanup ran, and could not reach the server
    (left,) = logged_models(client, training, task)
    assert logged_models(client, training, task) == {left: "PENDING"}

    result = modelify_try(mlflow_server, training, task, try_number=3)

    assert left != result.model_id
    assert_one_model_and_one_version(client, training, task, result)
    assert run_state(client, training.run_id) == before


def test_failed_registration_keeps_the_logged_model_and_the_retry_registers_it(training, mlflow_server, client, task):
    unreachable_registry = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModelRegistrationError, match=re.escape(task["registered_model_name"])):
        modelify_try(mlflow_server, training, task, try_number=1, registry_uri=unreachable_registry, max_retries=0)
    (kept,) = logged_models(client, training, task)
    assert logged_models(client, training, task) == {kept: "READY"}
    assert client.search_registered_models(f"name = '{task['registered_model_name']}'") == []

    result = modelify_try(mlflow_server, training, task, try_number=2)

    assert result.reused and result.model_id == kept
    assert_one_model_and_one_version(client, training, task, result)


def _model_files(server: MlflowServer, training: TrainingResult, model_id: str) -> list[Path]:
    """Files of logged model ``model_id`` already in the server's artifact store (``--artifacts-destination``)."""
    folder = server.root / "artifacts" / training.experiment_id / "models" / model_id
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []
