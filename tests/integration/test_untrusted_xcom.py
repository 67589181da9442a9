"""A forged training XCom against a real ``mlflow server``: modelify never ships a file of the worker it points at.

The XCom is untrusted input (anyone who can trigger, clear or edit task instances can change it). It may choose
which training run modelify builds from; the files come from where the project's catalog keeps them or from that
run, as the run's own manifest lists and hashes them.
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from airflow_kedro_mlflow.exceptions import ArtifactIntegrityError
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.modelify import modelify
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.servers import MlflowServer

pytestmark = pytest.mark.integration


def test_forged_xcom_never_gets_a_workers_file_into_a_registered_model(
    example_project: Path, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    tracking = TrackingConfig(mlflow_server.uri, max_retries=0)
    client = MlflowClient(mlflow_server.uri)
    genuine = run_training(example_project, tracking=tracking, experiment_name="untrusted-xcom").to_xcom()
    token = f"secret-{secrets.token_hex(16)}"
    secret = tmp_path / "worker-secret.txt"
    secret.write_text(f"password={token}\n", encoding="utf-8")
    # The forged uri points at a run that holds the secret too: modelify must not download from it either.
    with tracking.activate():
        decoy = client.create_run(genuine["experiment_id"]).info.run_id
        client.log_artifact(decoy, str(secret), "kedro_artifacts/classifier")
    forged = copy.deepcopy(genuine)
    forged["artifacts"]["classifier"].update(
        path=str(secret), uri=f"runs:/{decoy}/kedro_artifacts/classifier/{secret.name}", sha256=sha256_path(secret)
    )
    name = "untrusted-xcom-model"

    # The secret's own sha256: the XCom disagrees with the run's manifest, so nothing is logged or registered.
    with pytest.raises(ArtifactIntegrityError, match=rf"artifact 'classifier' .* MLflow run {genuine['run_id']}"):
        modelify(None, None, tracking=tracking, training=TrainingResult.from_xcom(forged), registered_model_name=name)
    assert client.search_registered_models(f"name = '{name}'") == []

    # The genuine sha256 copied over: the forged path and uri are ignored, the run's own copy is shipped.
    forged["artifacts"]["classifier"]["sha256"] = genuine["artifacts"]["classifier"]["sha256"]
    result = modelify(
        None, None, tracking=tracking, training=TrainingResult.from_xcom(forged), registered_model_name=name
    )

    assert (result.registered_model_name, result.version) == (name, "1")
    with tracking.activate():  # models:/ URIs are resolved by the registry, which activate() points at the server
        model_dir = Path(mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "model")))
    files = [path for path in model_dir.rglob("*") if path.is_file()]
    assert any(path.name == "classifier.pkl" for path in files)
    assert [path for path in files if token.encode() in path.read_bytes()] == []
    (classifier,) = [path for path in files if path.name == "classifier.pkl"]
    assert sha256_path(classifier) == genuine["artifacts"]["classifier"]["sha256"]
