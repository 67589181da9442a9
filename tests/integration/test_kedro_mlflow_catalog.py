"""A kedro-mlflow catalog moved by changing its ``type:`` lines only: the example project trains and the values land.

A copy of the example project gets kedro-mlflow's catalog entries (metric, metric history in ``mode: list``, metrics
history, artifact, model) exactly as kedro-mlflow documents them, with only the ``type:`` lines pointing at
``airflow_kedro_mlflow.datasets``, and nodes that return those values. It trains under ``run_training`` (with
Kedro's sequential and thread runners: the datasets are saved in the node's thread) and under ``kedro run`` with
``PipelineMLHook``; every value lands in the one training run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training

pytestmark = pytest.mark.integration

KEDRO = str(Path(sys.executable).with_name("kedro"))
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The entries as a kedro-mlflow 2.x project has them.
KEDRO_MLFLOW_CATALOG = """
test_accuracy:
  type: kedro_mlflow.io.metrics.MlflowMetricDataset

train_loss:
  type: kedro_mlflow.io.metrics.MlflowMetricHistoryDataset
  save_args:
    mode: list

test_scores:
  type: kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset

metrics_report:
  type: kedro_mlflow.io.artifacts.MlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: ${runtime_params:data_dir, data}/08_reporting/metrics_report.json

classifier_model:
  type: kedro_mlflow.io.models.MlflowModelTrackingDataset
  flavor: mlflow.sklearn
  save_args:
    name: classifier_model
    pip_requirements: [scikit-learn]
"""

#: The only edit of the move: each kedro-mlflow type -> ours.
TYPES = {
    "kedro_mlflow.io.metrics.MlflowMetricDataset": "airflow_kedro_mlflow.datasets.MlflowMetricDataset",
    "kedro_mlflow.io.metrics.MlflowMetricHistoryDataset": "airflow_kedro_mlflow.datasets.MlflowMetricHistoryDataset",
    "kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset": "airflow_kedro_mlflow.datasets.MlflowMetricsHistoryDataset",
    "kedro_mlflow.io.artifacts.MlflowArtifactDataset": "airflow_kedro_mlflow.datasets.MlflowArtifactDataset",
    "kedro_mlflow.io.models.MlflowModelTrackingDataset": "airflow_kedro_mlflow.datasets.MlflowModelTrackingDataset",
}

TRACKING_NODES = '''
"""Nodes returning what kedro-mlflow's tracking datasets log (added by the test)."""


def accuracy(metrics):
    return metrics["accuracy"]


def loss_curve(max_iter):
    return [1.0 / (step + 1) for step in range(3)]


def scores(metrics):
    return {name: {"value": value, "step": 0} for name, value in metrics.items()}


def report(metrics):
    return {"metrics": metrics, "note": "logged as an artifact"}


def same_model(classifier):
    return classifier
'''

PIPELINE_PATCH = """

_create_training_pipeline = create_pipeline


def create_pipeline(**kwargs):
    from kedro_classifier.pipelines.training import tracking_nodes as t

    return _create_training_pipeline(**kwargs) + Pipeline(
        [
            node(t.accuracy, "metrics", "test_accuracy", name="log_accuracy"),
            node(t.loss_curve, "params:max_iter", "train_loss", name="log_loss_curve"),
            node(t.scores, "metrics", "test_scores", name="log_scores"),
            node(t.report, "metrics", "metrics_report", name="log_report"),
            node(t.same_model, "classifier", "classifier_model", name="log_classifier_model"),
        ]
    )
"""


def _migrated(project: Path) -> Path:
    """Add the kedro-mlflow entries and their nodes to the project, then change only their ``type:`` lines."""
    moved = KEDRO_MLFLOW_CATALOG
    for old, new in TYPES.items():
        moved = moved.replace(f"type: {old}\n", f"type: {new}\n")
    changed = [(a, b) for a, b in zip(KEDRO_MLFLOW_CATALOG.splitlines(), moved.splitlines(), strict=True) if a != b]
    assert changed and all(a.strip().startswith("type: kedro_mlflow.") for a, _ in changed)
    with (project / "conf" / "base" / "catalog.yml").open("a") as catalog:
        catalog.write(moved)
    training = project / "src" / "kedro_classifier" / "pipelines" / "training"
    (training / "tracking_nodes.py").write_text(TRACKING_NODES)
    with (training / "pipeline.py").open("a") as pipeline:
        pipeline.write(PIPELINE_PATCH)
    return project


def _assert_landed(client: MlflowClient, run_id: str, data_root: Path) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "1.0"
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == metrics["accuracy"]  # the node's own mlflow.log_metrics and the dataset agree
    assert metrics["test_scores.f1"] == metrics["f1"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == [
        (0, 1.0),
        (1, 0.5),
        (2, 1 / 3),
    ]
    assert [entry.path for entry in client.list_artifacts(run_id, "reports")] == ["reports/metrics_report.json"]
    report = mlflow.artifacts.load_dict(f"runs:/{run_id}/reports/metrics_report.json")
    assert report["metrics"]["accuracy"] == metrics["accuracy"]
    assert (data_root / "08_reporting" / "metrics_report.json").is_file()
    (model,) = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = 'classifier_model'",
    )
    assert mlflow.sklearn.load_model(f"models:/{model.model_id}").predict_proba is not None


#: Kedro 1.x saves a node's outputs after ``after_node_run``, in the node's thread: under ThreadRunner the run must be
#: shared with that thread for the saves too (tracking.runs.ThreadSharedRun), or the datasets see no active run.
RUNNERS = ["SequentialRunner", "ThreadRunner"]


@pytest.mark.parametrize("runner", RUNNERS)
def test_kedro_mlflow_catalog_logs_into_the_training_run(
    example_project: Path, tracking_uri: str, tmp_path: Path, runner: str
) -> None:
    project = _migrated(example_project)
    tracking = TrackingConfig(tracking_uri, max_retries=0)

    result = run_training(project, tracking=tracking, runner=runner, runtime_params={"data_dir": str(tmp_path / "d")})

    with tracking.activate():
        _assert_landed(tracking.client(), result.run_id, tmp_path / "d")
        assert len(tracking.client().search_runs([result.experiment_id])) == 1  # no stray run


@pytest.mark.parametrize("runner", RUNNERS)
def test_kedro_mlflow_catalog_logs_into_the_run_of_kedro_run_with_our_hook(
    example_project: Path, tracking_uri: str, runner: str
) -> None:
    project = _migrated(example_project)
    settings = project / "src" / "kedro_classifier" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\nfrom airflow_kedro_mlflow.kedro_hooks import PipelineMLHook\n\n"
        + f"HOOKS = (PipelineMLHook(tracking_uri={tracking_uri!r}),)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "KEDRO_"))}
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", PYTHONPATH=str(REPO_ROOT))  # this checkout's package

    done = subprocess.run(
        [KEDRO, "run", "--pipelines", "training", "--runner", runner],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "kedro_classifier"]
    (run,) = client.search_runs([experiment.experiment_id])
    mlflow.set_tracking_uri(tracking_uri)
    _assert_landed(client, run.info.run_id, project / "data")
