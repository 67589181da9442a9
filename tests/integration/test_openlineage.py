"""OpenLineage events of a real DAG run: Airflow's OpenLineage provider, a file transport, a basic-auth MLflow server.

The DAG (written below into a temporary DAGs folder) trains the example project from ``split_data`` on, so the run
reads ``raw_data`` from disk (a free input) and writes the split, the scaler, the classifier and the metrics; then
modelify registers a version, promote moves ``champion`` onto it and a batch prediction scores the test rows.
``airflow dags test`` runs it in a child process (so the provider's configuration, read once per process, is this
test's only), and the provider's listener writes one JSON event per line into a file. The COMPLETE events must name
exactly the datasets each task read and wrote, and no event may carry the MLflow password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.conftest import EXAMPLE_PROJECT
from tests.servers import MlflowServer

pytest.importorskip("airflow.providers.openlineage", reason="the `openlineage` extra is not installed")

pytestmark = pytest.mark.integration

DAG_ID = "akm_test_openlineage"
MODEL = "akm_openlineage"
DAG_SOURCE = f'''
"""Test-only DAG: train from split_data on, modelify, promote, score; each task reports its datasets to OpenLineage."""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.operators.mlflow import MlflowPromoteModelOperator
from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator

with DAG("{DAG_ID}", schedule=None, render_template_as_native_obj=True):
    train = KedroTrainingOperator(
        task_id="train",
        project_path=os.environ["AKM_OL_PROJECT"],
        experiment_name="{MODEL}",
        from_nodes=["split_data"],
        runtime_params={{"data_dir": os.environ["AKM_OL_DATA_DIR"]}},
    )
    modelify = KedroModelifyOperator(task_id="modelify", training_task_id="train", registered_model_name="{MODEL}")
    promote = MlflowPromoteModelOperator(task_id="promote", modelify_task_id="modelify", metric="accuracy")
    score = MlflowBatchPredictOperator(
        task_id="score",
        model_uri="models:/{MODEL}@champion",
        input_path=os.path.join(os.environ["AKM_OL_DATA_DIR"], "05_model_input", "test_instances.csv"),
        output_path=os.path.join(os.environ["AKM_OL_DATA_DIR"], "07_model_output", "scores.csv"),
    )
    train >> modelify >> promote >> score
'''


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory: pytest.TempPathFactory, mlflow_auth_server: MlflowServer) -> dict[str, Any]:
    """Run the DAG once; return the events (by task id and event type), the process output and the data dir."""
    import shutil

    from sklearn.datasets import load_breast_cancer

    root = tmp_path_factory.mktemp("openlineage")
    dags = root / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_SOURCE))
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    data_dir = root / "data"
    raw = data_dir / "01_raw" / "breast_cancer.csv"
    raw.parent.mkdir(parents=True)
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    frame.to_csv(raw, index=False)
    events_file = root / "events.jsonl"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_auth_server.airflow_conn_uri(),
        "AKM_OL_PROJECT": str(project),
        "AKM_OL_DATA_DIR": str(data_dir),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    output = ""
    for command in (["db", "migrate"], ["dags", "test", DAG_ID]):
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output += done.stdout + done.stderr
        assert done.returncode == 0, output[-6000:]
    lines = events_file.read_text(encoding="utf-8").splitlines() if events_file.exists() else []
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines:
        event = json.loads(line)
        task_id = event["job"]["name"].removeprefix(f"{DAG_ID}.")
        events[(task_id, event["eventType"])] = event
    return {"events": events, "raw": "\n".join(lines), "output": output, "data_dir": data_dir, "root": root}


def _datasets(event: dict[str, Any], direction: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(dataset["namespace"], dataset["name"]): dataset.get("facets", {}) for dataset in event[direction]}


def test_training_complete_event_names_the_catalog_datasets_and_the_run(lineage_run, mlflow_auth_server) -> None:
    events, data_dir = lineage_run["events"], lineage_run["data_dir"]
    assert ("train", "COMPLETE") in events, f"{sorted(events)}\n{lineage_run['output'][-6000:]}"
    complete = events[("train", "COMPLETE")]
    assert set(_datasets(complete, "inputs")) == {("file", str(data_dir / "01_raw" / "breast_cancer.csv"))}
    outputs = _datasets(complete, "outputs")
    written = {
        "05_model_input/instances.csv",
        "05_model_input/labels.csv",
        "05_model_input/test_instances.csv",
        "05_model_input/test_labels.csv",
        "06_models/scaler.pkl",
        "06_models/classifier.pkl",
        "08_reporting/metrics.json",
    }
    runs = [name for namespace, name in outputs if namespace == mlflow_auth_server.uri]
    assert {name for namespace, name in outputs if namespace == "file"} == {str(data_dir / w) for w in written}
    assert len(runs) == 1 and runs[0].startswith("experiments/") and "/runs/" in runs[0]
    # versioned datasets carry this run's Kedro save version, the same for all of them
    versions = {facets["version"]["datasetVersion"] for (_, name), facets in outputs.items() if name.endswith(".pkl")}
    assert len(versions) == 1
    assert "version" not in outputs[("file", str(data_dir / "05_model_input/instances.csv"))]


def test_modelify_reads_the_training_run_and_writes_the_version(lineage_run, mlflow_auth_server) -> None:
    events = lineage_run["events"]
    run_name = next(name for namespace, name in _datasets(events[("train", "COMPLETE")], "outputs") if "/runs/" in name)
    complete = events[("modelify", "COMPLETE")]
    assert set(_datasets(complete, "inputs")) == {(mlflow_auth_server.uri, run_name)}
    assert set(_datasets(complete, "outputs")) == {(mlflow_auth_server.uri, f"models/{MODEL}/1")}


def test_promote_reads_the_version_and_writes_the_alias(lineage_run, mlflow_auth_server) -> None:
    complete = lineage_run["events"][("promote", "COMPLETE")]
    assert set(_datasets(complete, "inputs")) == {(mlflow_auth_server.uri, f"models/{MODEL}/1")}
    assert set(_datasets(complete, "outputs")) == {(mlflow_auth_server.uri, f"models/{MODEL}@champion")}


def test_scoring_reads_the_champion_version_and_the_input_and_writes_the_scores(lineage_run, mlflow_auth_server):
    complete, data_dir = lineage_run["events"][("score", "COMPLETE")], lineage_run["data_dir"]
    assert set(_datasets(complete, "inputs")) == {
        (mlflow_auth_server.uri, f"models/{MODEL}/1"),  # the version the alias resolved to, not the alias
        ("file", str(data_dir / "05_model_input" / "test_instances.csv")),
    }
    assert set(_datasets(complete, "outputs")) == {("file", str(data_dir / "07_model_output" / "scores.csv"))}


def test_no_event_carries_the_mlflow_password(lineage_run, mlflow_auth_server) -> None:
    assert lineage_run["raw"]
    assert mlflow_auth_server.admin_password not in lineage_run["raw"]


@pytest.mark.parametrize(
    ("location", "naming"),
    [
        ("/data/iris.csv", ("LocalFileSystem", {"path": "/data/iris.csv"})),
        ("s3://bucket/raw/iris.csv", ("S3", {"bucket_name": "bucket", "object_key": "raw/iris.csv"})),
        ("gs://bucket/raw/iris.csv", ("GCS", {"bucket_name": "bucket", "object_key": "raw/iris.csv"})),
        (
            "abfss://container@account.dfs.core.windows.net/raw/iris.csv",
            ("ABFSS", {"container": "container", "service": "account", "path": "raw/iris.csv"}),
        ),
        (
            "hdfs://namenode:8020/raw/iris.csv",
            ("HDFS", {"namenode_host": "namenode", "namenode_port": "8020", "path": "raw/iris.csv"}),
        ),
    ],
)
def test_naming_agrees_with_openlineage_python(location: str, naming: tuple[str, dict[str, str]]) -> None:
    """``dataset_naming`` parses a URL; openlineage-python's naming classes say what its parts must become."""
    from openlineage.client.naming import dataset as ol_naming

    from airflow_kedro_mlflow.openlineage import dataset_naming

    expected = getattr(ol_naming, naming[0])(**naming[1])
    assert dataset_naming(location) == (expected.get_namespace(), expected.get_name())


def test_importing_the_operators_imports_no_openlineage_module() -> None:
    """A DAG file imports the operators, which import the naming module: neither may load OpenLineage's classes.

    (Airflow's provider discovery imports every provider's ``get_provider_info``: that one is not ours to avoid.)
    """
    code = (
        "import sys; import airflow_kedro_mlflow.operators.kedro, airflow_kedro_mlflow.operators.mlflow; "
        "ours = ('openlineage.', 'airflow.providers.openlineage.extractors', "
        "'airflow.providers.common.compat.openlineage'); "
        "print(sorted(m for m in sys.modules if (m + '.').startswith(ours)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
