"""The example Kedro project for real: `kedro run` from its folder, and run_training against real MLflow servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer

pytestmark = pytest.mark.integration

KEDRO = str(Path(sys.executable).with_name("kedro"))


def _kedro_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "KEDRO_"))}
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    return env


def test_kedro_run_trains_then_infers_from_the_project_folder(example_project: Path) -> None:
    train = subprocess.run(
        [KEDRO, "run", "--pipelines", "training"],
        check=False,
        cwd=example_project,
        env=_kedro_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stdout + train.stderr

    models = example_project / "data" / "06_models"
    for name in ("scaler", "classifier"):
        (version,) = (models / f"{name}.pkl").iterdir()  # versioned: one folder per run
        assert (version / f"{name}.pkl").is_file()
    # no tracking URI configured: the evaluate node logs nothing, and MLflow's implicit stores are never created
    assert not (example_project / "mlflow.db").exists()
    assert not (example_project / "mlruns").exists()

    infer = subprocess.run(
        [KEDRO, "run", "--pipelines", "inference", "--params", "threshold=0.99"],
        check=False,
        cwd=example_project,
        env=_kedro_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert infer.returncode == 0, infer.stdout + infer.stderr
    predictions = pd.read_csv(example_project / "data" / "07_model_output" / "predictions.csv")
    instances = pd.read_csv(example_project / "data" / "05_model_input" / "instances.csv")
    assert list(predictions.columns) == ["probability", "prediction"]
    assert len(predictions) == len(instances)
    assert ((predictions["probability"] >= 0.99) == (predictions["prediction"] == 1)).all()


def test_training_against_a_tracking_server_uploads_hashed_artifacts(
    example_project: Path, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    tracking = TrackingConfig(mlflow_server.uri, max_retries=0)

    result = run_training(example_project, tracking=tracking, experiment_name="integration-training")

    run = MlflowClient(mlflow_server.uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert result.run_url == f"{mlflow_server.uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    assert set(result.artifacts) == {"classifier", "params:threshold", "scaler"}
    for name, record in result.artifacts.items():
        copy = mlflow.artifacts.download_artifacts(
            artifact_uri=record.uri, dst_path=str(tmp_path / name.replace(":", "_")), tracking_uri=mlflow_server.uri
        )
        assert sha256_path(copy) == record.sha256, name
    for name in ("classifier", "scaler"):
        assert sha256_path(result.artifacts[name].path) == result.artifacts[name].sha256
    # parameter files are uploaded then removed: a long-lived worker keeps no folder per training run
    assert not Path(result.artifacts["params:threshold"].path).exists()


def test_training_with_basic_auth_keeps_the_password_in_memory(
    example_project: Path, mlflow_auth_server: MlflowServer, capfd: pytest.CaptureFixture[str], caplog
) -> None:
    password = mlflow_auth_server.admin_password
    tracking = TrackingConfig(mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password=password, max_retries=0)

    with caplog.at_level("DEBUG"):
        result = run_training(
            example_project, tracking=tracking, experiment_name="integration-auth", runtime_params={"C": 0.3}
        )

    out, err = capfd.readouterr()
    assert password not in out + err
    assert all(password not in record.getMessage() for record in caplog.records)
    assert password not in json.dumps(result.to_xcom())
    assert all(password not in value for value in os.environ.values())
    with tracking.activate():
        run = tracking.client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.3"


def test_rejected_credentials_fail_before_training(example_project: Path, mlflow_auth_server: MlflowServer) -> None:
    tracking = TrackingConfig(mlflow_auth_server.uri, username=MLFLOW_ADMIN_USER, password="wrong-pass", max_retries=0)

    with pytest.raises(MlflowConnectionError, match="answered HTTP 401") as info:
        run_training(example_project, tracking=tracking)

    assert "wrong-pass" not in str(info.value)
    assert not (example_project / "data" / "01_raw" / "breast_cancer.csv").exists()
