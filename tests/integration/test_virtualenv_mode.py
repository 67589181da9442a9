"""Virtualenv execution mode for real: a venv built with uv from a project's requirements (scikit-learn 1.7.2, not
the test environment's), training through ``KedroTrainingOperator.execute()`` against a real ``mlflow server``,
the venv cache reused and built once under concurrency, bad project environments, and a killed child.

The venv is built once per module into a private cache directory (its cold build time is printed); every other test
reuses it, as Airflow tasks on one worker do.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from importlib import metadata
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.execution import ProjectEnvironmentError, ProjectProcessError, VirtualenvExecution
from airflow_kedro_mlflow.execution.venv import MARKER, ensure_venv
from airflow_kedro_mlflow.operators.kedro import RUN_ID_KEY, KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.conftest import REPO_ROOT
from tests.servers import MlflowServer
from tests.unit.airflow.conftest import RecordingTaskInstance, make_context
from tests.unit.test_execution import CREDENTIALS, install_probe_hook

pytestmark = pytest.mark.integration

#: The project's environment: another scikit-learn than the test environment's (1.9.x), wheels for Python 3.11+.
PROJECT_SKLEARN = "1.7.2"
REQUIREMENTS = (
    f"scikit-learn=={PROJECT_SKLEARN}\n"
    "pandas>=2\n"
    "kedro-datasets[pandas-csvdataset,pickle-pickledataset,json-jsondataset]>=9\n"
)


@pytest.fixture(scope="module")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venv-cache")


@pytest.fixture(scope="module")
def project_python(venv_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project venv, built cold once for the module (uv's own package cache may be warm)."""
    requirements = tmp_path_factory.mktemp("requirements") / "requirements.txt"
    requirements.write_text(REQUIREMENTS)
    started = time.perf_counter()
    python = ensure_venv(requirements, cache_root=venv_cache)
    print(f"\ncold virtualenv build: {time.perf_counter() - started:.1f} s")
    return python


@pytest.fixture
def project(example_project: Path) -> Path:
    install_probe_hook(example_project)
    (example_project / "requirements.txt").write_text(REQUIREMENTS)
    return example_project


@pytest.fixture
def server(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_server.airflow_conn_uri())
    return mlflow_server


def _client(server: MlflowServer) -> MlflowClient:
    env = server.client_env()
    if server.auth:
        os.environ.update({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
    return MlflowClient(tracking_uri=server.uri)


def _nothing_created(server: MlflowServer, experiment_name: str) -> None:
    assert MlflowClient(tracking_uri=server.uri).get_experiment_by_name(experiment_name) is None


def test_training_in_a_virtualenv_gives_the_in_process_xcom_then_modelify_in_either_mode(
    project, project_python, venv_cache, mlflow_auth_server, monkeypatch, caplog, tmp_path
):
    """The project's own scikit-learn trains; credentials reach MLflow but not the command line, the Kedro process's
    environment or its children; the XCom is the in-process one; modelify works from it in-process and in the venv."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_auth_server.airflow_conn_uri())
    probe = tmp_path / "probe.json"
    monkeypatch.setenv("AKM_PROBE_FILE", str(probe))
    execution = VirtualenvExecution(requirements="requirements.txt", cache_dir=str(venv_cache))
    ti = RecordingTaskInstance(task_id="train")
    caplog.set_level(logging.INFO, logger="airflow_kedro_mlflow")

    payload = KedroTrainingOperator(
        task_id="train", project_path=str(project), runtime_params={"C": 0.5}, experiment_name="venv_mode",
        mlflow_tags={"team": "ml"}, execution=execution,
    ).execute(make_context(ti))  # fmt: skip

    assert set(payload) == {field.name for field in fields(TrainingResult)}
    assert TrainingResult.from_xcom(payload).to_xcom() == payload
    assert (payload["tracking_uri"], payload["project_path"]) == (mlflow_auth_server.uri, str(project))
    assert payload["runtime_params"] == {"C": 0.5}  # typed through the command line
    assert sorted(payload["artifacts"]) == ["classifier", "params:threshold", "scaler"]
    assert (
        payload["run_url"]
        == f"{mlflow_auth_server.uri}/#/experiments/{payload['experiment_id']}/runs/{payload['run_id']}"
    )
    assert ti.xcoms[("train", RUN_ID_KEY)] == payload["run_id"]  # pushed when the child announced its run
    seen = json.loads(probe.read_text())
    assert seen["sklearn"] == PROJECT_SKLEARN != metadata.version("scikit-learn")
    assert Path(seen["executable"]).parent.parent == project_python.parent.parent
    assert not set(CREDENTIALS) & (set(seen["env"]) | set(seen["grandchild_env"]))
    assert not any(name.startswith("AIRFLOW_CONN") for name in seen["env"])
    assert mlflow_auth_server.admin_password not in caplog.text  # the logged command line carries no secret
    assert any(" train --project-path " in record.getMessage() for record in caplog.records)
    assert any("Node fit_classifier finished" in record.getMessage() for record in caplog.records)  # streamed
    client = _client(mlflow_auth_server)
    run = client.get_run(payload["run_id"])
    assert (run.info.status, run.data.params["C"], run.data.tags["team"]) == ("FINISHED", "0.5", "ml")
    assert run.data.tags["airflow.task_id"] == "train"

    ti.xcoms[("train", "return_value")] = payload
    for task_id, mode in (("modelify_in_process", None), ("modelify_in_venv", execution)):
        modelify_ti = RecordingTaskInstance(task_id=task_id, xcoms=ti.xcoms)
        result = KedroModelifyOperator(
            task_id=task_id,
            training_task_id="train",
            registered_model_name=task_id,
            log_model_kwargs={"name": task_id},  # two models of one training run: one name each
            execution=mode,
        ).execute(make_context(modelify_ti))
        assert (result["run_id"], result["model_uri"]) == (payload["run_id"], f"models:/{task_id}/1")
        assert result["model_version_url"].startswith(mlflow_auth_server.uri)


def test_the_cached_venv_is_reused_in_well_under_a_second(project_python, venv_cache, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(REQUIREMENTS)  # same content, another path: same venv
    started = time.perf_counter()
    assert ensure_venv(requirements, cache_root=venv_cache) == project_python
    warm = time.perf_counter() - started
    built = json.loads((project_python.parent.parent / MARKER).read_text())
    print(f"\nwarm cache lookup: {warm * 1000:.0f} ms (cold build was {built['build_seconds']} s)")
    assert warm < 1.0


BUILD = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(message)s")
from airflow_kedro_mlflow.execution.venv import ensure_venv
print(ensure_venv(Path(sys.argv[1]), cache_root=Path(sys.argv[2])))
"""


def test_two_tasks_building_the_same_venv_at_once_make_one(project_python, tmp_path):
    """Two worker processes want the same (missing) venv: one builds it, the other waits on the lock and reuses it."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(REQUIREMENTS)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(requirements), str(cache)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [builder.communicate(timeout=900) for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], outputs
    pythons = {out.strip().splitlines()[-1] for out, _ in outputs}
    logs = "".join(err for _, err in outputs)
    assert len(pythons) == 1
    assert logs.count("Building the virtualenv") == 1, logs
    assert logs.count("Reusing the virtualenv") == 1, logs
    assert [path.name for path in (cache / "venvs").iterdir() if path.is_dir()] == [
        Path(pythons.pop()).parent.parent.name
    ]


def test_an_interpreter_that_does_not_exist_or_cannot_run_fails_before_any_run(project, server, tmp_path):
    not_executable = tmp_path / "python"
    not_executable.write_text("")
    for python, message in ((tmp_path / "nope" / "bin" / "python", "does not exist"), (not_executable, "executable")):
        operator = KedroTrainingOperator(
            task_id="train", project_path=str(project), experiment_name="venv_bad_python",
            execution=VirtualenvExecution(python=str(python), cache_dir=str(tmp_path / "cache")),
        )  # fmt: skip
        with pytest.raises(ProjectEnvironmentError, match=message) as error:
            operator.execute(make_context(RecordingTaskInstance(task_id="train")))
        assert f"the Python environment of {python}" in str(error.value)
        assert "VirtualenvExecution(python=...)" in str(error.value)
    _nothing_created(server, "venv_bad_python")


def _bare_venv(path: Path, *packages: str) -> Path:
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(path)], check=True)
    if packages:
        python = str(path / "bin" / "python")
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", python, "--no-deps", *packages], check=True)
    return path / "bin" / "python"


@pytest.mark.parametrize(
    ("packages", "problem"),
    [((), "kedro is not installed; mlflow is not installed"), (("kedro==0.19.14",), "kedro 0.19.14 is installed")],
    ids=["no-kedro", "kedro-0.19"],
)
def test_an_environment_without_a_supported_kedro_names_it_and_the_fix(project, server, tmp_path, packages, problem):
    python = _bare_venv(tmp_path / "env", *packages)
    operator = KedroTrainingOperator(
        task_id="train", project_path=str(project), experiment_name="venv_bad_kedro",
        execution=VirtualenvExecution(python=str(python), cache_dir=str(tmp_path / "cache")),
    )  # fmt: skip
    with pytest.raises(ProjectEnvironmentError) as error:
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))
    message = str(error.value)
    assert message.startswith(f"the Python environment of {python} (Python 3.")
    assert problem in message
    assert "supported: 'kedro>=1.0,<2' 'mlflow>=3.1,<3.18'" in message
    assert "uv pip install --python <that python>" in message
    _nothing_created(server, "venv_bad_kedro")


def test_requirements_that_do_not_resolve_name_the_file_and_leave_nothing(project, server, tmp_path):
    (project / "requirements.txt").write_text("scikit-learn==0.0.0\n")  # no such version
    cache = tmp_path / "cache"
    operator = KedroTrainingOperator(
        task_id="train", project_path=str(project), experiment_name="venv_bad_requirements",
        execution=VirtualenvExecution(requirements="requirements.txt", cache_dir=str(cache)),
    )  # fmt: skip
    with pytest.raises(ProjectEnvironmentError) as error:
        operator.execute(make_context(RecordingTaskInstance(task_id="train")))
    message = str(error.value)
    assert f"Could not build the virtualenv for {project / 'requirements.txt'}" in message
    assert "scikit-learn==0.0.0" in message  # uv's own explanation
    assert "Fix the requirements file" in message
    assert [path.name for path in (cache / "venvs").iterdir() if path.is_dir()] == []  # no half-built venv
    _nothing_created(server, "venv_bad_requirements")


def test_a_child_killed_by_sigkill_fails_the_task_and_its_run(project, project_python, server, tmp_path, monkeypatch):
    """An existing interpreter (python=): the core goes on its PYTHONPATH. The child dies at fit_classifier."""
    monkeypatch.setenv("AKM_PROBE_ON_NODE", "sigkill")
    ti = RecordingTaskInstance(task_id="train")
    operator = KedroTrainingOperator(
        task_id="train", project_path=str(project), experiment_name="venv_sigkill",
        execution=VirtualenvExecution(python=str(project_python), cache_dir=str(tmp_path / "cache")),
    )  # fmt: skip
    with pytest.raises(ProjectProcessError, match="killed by SIGKILL") as error:
        operator.execute(make_context(ti))
    run_id = ti.xcoms[("train", RUN_ID_KEY)]
    assert f"MLflow run {run_id} is marked FAILED" in str(error.value)
    assert f"the Python environment of {project_python}" in str(error.value)
    run = MlflowClient(tracking_uri=server.uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["airflow_kedro_mlflow.failed_reason"] == "the training process was killed by SIGKILL"


def test_on_kill_stops_the_child_process_group_and_the_run_ends_failed(
    project, project_python, venv_cache, server, tmp_path, monkeypatch
):
    """As Airflow does: SIGTERM to the task process, whose handler calls on_kill while execute() streams the log."""
    from airflow.sdk.exceptions import AirflowTaskTerminated

    probe = tmp_path / "probe.json"
    monkeypatch.setenv("AKM_PROBE_FILE", str(probe))
    monkeypatch.setenv("AKM_PROBE_ON_NODE", "sleep")
    ti = RecordingTaskInstance(task_id="train")
    operator = KedroTrainingOperator(
        task_id="train", project_path=str(project), experiment_name="venv_on_kill",
        execution=VirtualenvExecution(requirements="requirements.txt", cache_dir=str(venv_cache)),
    )  # fmt: skip

    def kill_once_training_hangs() -> None:
        deadline = time.monotonic() + 600
        while ("train", RUN_ID_KEY) not in ti.xcoms and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the nodes before fit_classifier take a fraction of that
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: operator.on_kill())
    killer = threading.Thread(target=kill_once_training_hangs, daemon=True)
    killer.start()
    try:
        with pytest.raises(AirflowTaskTerminated):
            operator.execute(make_context(ti))
    finally:
        signal.signal(signal.SIGTERM, previous)
        killer.join(timeout=5)
    child = json.loads(probe.read_text())["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # gone: no training outlives its task
    run = MlflowClient(tracking_uri=server.uri).get_run(ti.xcoms[("train", RUN_ID_KEY)])
    assert run.info.status == "FAILED"
