"""Credentials reach only their own server, end to end: a real training run against a basic-auth ``mlflow server``.

A test-only copy of the example project gets one more training node, standing for project code (or a library it
calls) that talks to *another* MLflow server during the run, and that starts a child process. The other server is a
loopback HTTP server recording the ``Authorization`` header of every request. The training run itself must still
authenticate to its own server (it logs params, metrics and artifacts there), while the other server sees no
credentials and the child process inherits no password.

``run_training`` runs in a process of its own (given the password on its stdin, never in its environment), so this
copy's pipeline registry does not become the ``kedro_classifier`` that later tests of this session import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import REPO_ROOT
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer, RecordingMlflowServer

pytestmark = pytest.mark.integration

# A training node that contacts another MLflow server and starts a child process; it reports what it saw in a file.
PROBE_MODULE = '''
"""Test-only node: project code that talks to another MLflow server during training, and starts a child process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow


def contact_other_server(classifier, other_mlflow_uri, probe_report):
    mlflow.MlflowClient(tracking_uri=other_mlflow_uri).search_experiments()
    child = subprocess.run(
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        capture_output=True, text=True, check=True,
    )
    report = {"node_environment": dict(os.environ), "child_environment": json.loads(child.stdout)}
    Path(probe_report).write_text(json.dumps(report))
    return len(report)
'''

# Train with the connection given on stdin (the password is never in this process's environment); print the XCom.
TRAIN = """
import json
import sys

from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training

config = json.loads(sys.stdin.read())
tracking = TrackingConfig(config["uri"], username=config["username"], password=config["password"], max_retries=0)
result = run_training(config["project"], tracking=tracking, experiment_name="credentials-scope",
                      runtime_params=config["runtime_params"])
print(json.dumps(result.to_xcom()))
"""

# The example's registry with the probe node added to the training pipeline (after the classifier is fitted).
PIPELINE_REGISTRY = """
from kedro.pipeline import Pipeline, node

from airflow_kedro_mlflow.pipeline import pipeline_ml_factory
from kedro_classifier.pipelines import inference, training
from kedro_classifier.probe import contact_other_server


def register_pipelines():
    probe = node(
        contact_other_server,
        ["classifier", "params:other_mlflow_uri", "params:probe_report"],
        "probe_entries",
        name="contact_other_server",
    )
    inference_pipeline = inference.create_pipeline()
    training_pipeline = pipeline_ml_factory(
        training=training.create_pipeline() + Pipeline([probe]),
        inference=inference_pipeline,
        input_name="instances",
    )
    return {"training": training_pipeline, "inference": inference_pipeline, "__default__": training_pipeline}
"""


@pytest.fixture
def other_server() -> Iterator[RecordingMlflowServer]:
    server = RecordingMlflowServer()
    yield server
    server.close()


def test_a_node_talking_to_another_mlflow_server_gets_no_credentials(
    example_project: Path, mlflow_auth_server: MlflowServer, other_server: RecordingMlflowServer, tmp_path: Path
) -> None:
    package = example_project / "src" / "kedro_classifier"
    (package / "probe.py").write_text(PROBE_MODULE)
    (package / "pipeline_registry.py").write_text(PIPELINE_REGISTRY)
    password = mlflow_auth_server.admin_password
    report_path = tmp_path / "probe.json"
    config = {
        "project": str(example_project),
        "uri": mlflow_auth_server.uri,
        "username": MLFLOW_ADMIN_USER,
        "password": password,
        "runtime_params": {"other_mlflow_uri": other_server.uri, "probe_report": str(report_path)},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON", "KEDRO_"))}
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONPATH=str(REPO_ROOT))  # this checkout's package

    completed = subprocess.run(
        [sys.executable, "-c", TRAIN], input=json.dumps(config), cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    tracking = TrackingConfig(mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password=password, max_retries=0)
    with tracking.activate():
        run = tracking.client().get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert "accuracy" in run.data.metrics  # the nodes' own logging still reached our server, authenticated
    assert other_server.authorizations == [None]  # the other server was contacted, without our credentials
    report = json.loads(report_path.read_text())
    for where in ("node_environment", "child_environment"):
        leaked = [name for name, value in report[where].items() if password in value]
        assert leaked == [], f"the password is in the {where}: {leaked}"
