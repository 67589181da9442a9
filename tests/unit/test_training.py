"""run_training: a real Kedro session of the example project, in a real (sqlite) MLflow store."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from kedro.runner import SequentialRunner, ThreadRunner
from mlflow.tracking import MlflowClient

from airflow_kedro_mlflow.exceptions import (
    ArtifactNotFoundError,
    KedroProjectError,
    KedroRunError,
    MlflowConnectionError,
    MlflowServerUnavailableError,
    MlflowRunNotFoundError,
)
from airflow_kedro_mlflow.kedro_hooks import DISABLE_ENV_VAR
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training
from airflow_kedro_mlflow.training.controls import resolve_runner as _resolve_runner
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.conftest import EXAMPLE_PROJECT
from tests.servers import free_port


def _copy_project(target: Path) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


class _RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class _EnvSpyRunner(SequentialRunner):
    """A SequentialRunner that remembers an environment variable as the pipeline runs."""

    seen: str | None = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        type(self).seen = os.environ.get(DISABLE_ENV_VAR)
        return super().run(*args, **kwargs)


@dataclass
class Trained:
    result: TrainingResult
    project: Path
    tracking: TrackingConfig
    logs: list[str]
    hook_disabled_during_run: str | None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sqlite MLflow store shared by this module's runs (each test looks at its own run or experiment)."""
    yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sqlite MLflow store that must stay without runs: bad input is refused before any run starts."""
    return f"sqlite:///{tmp_path_factory.mktemp('empty-store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, store: str) -> Trained:
    """One successful training of the example project, shared by the assertions below."""
    root = tmp_path_factory.mktemp("trained")
    project = _copy_project(root / "kedro_classifier")
    tracking = TrackingConfig(store)
    handler = _RecordingHandler()
    logging.getLogger("airflow_kedro_mlflow").addHandler(handler)
    try:
        result = run_training(
            project,
            "training",
            tracking=tracking,
            runtime_params={"C": 0.5, "threshold": 0.4},
            run_name="try-1",
            mlflow_tags={"airflow.dag_id": "retrain", "airflow.try_number": 1},
            runner=_EnvSpyRunner(),
        )
    finally:
        logging.getLogger("airflow_kedro_mlflow").removeHandler(handler)
    return Trained(result, project, tracking, handler.lines, _EnvSpyRunner.seen)


def test_result_describes_the_run_and_the_session(trained: Trained) -> None:
    result = trained.result

    assert result.pipeline_name == "training"
    assert result.input_name == "instances"
    assert result.project_path == str(trained.project.resolve())
    assert result.env == "local"
    assert result.conf_source is None
    assert result.runtime_params == {"C": 0.5, "threshold": 0.4}
    assert result.tracking_uri == trained.tracking.tracking_uri
    assert result.run_url is None  # a sqlite store has no browser address
    assert TrainingResult.from_xcom(json.loads(json.dumps(result.to_xcom()))) == result


def test_run_is_finished_with_params_metrics_and_tags(trained: Trained) -> None:
    run = MlflowClient(trained.tracking.tracking_uri).get_run(trained.result.run_id)

    assert run.info.status == "FINISHED"
    assert run.info.run_name == "try-1"
    assert run.info.experiment_id == trained.result.experiment_id
    experiment = MlflowClient(trained.tracking.tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == "kedro_classifier"  # default: the project's package name
    assert run.data.params == {
        "C": "0.5",
        "max_iter": "1000",
        "random_state": "42",
        "test_size": "0.25",
        "threshold": "0.4",
    }
    assert set(run.data.metrics) == {"accuracy", "f1"}
    assert 0.9 < run.data.metrics["accuracy"] <= 1.0
    tags = run.data.tags
    assert tags["kedro.pipeline_name"] == "training"
    assert tags["kedro.env"] == "local"
    assert tags["airflow.dag_id"] == "retrain"
    assert tags["airflow.try_number"] == "1"


def test_every_inference_artifact_is_recorded_with_its_exact_version(trained: Trained) -> None:
    artifacts = trained.result.artifacts

    assert set(artifacts) == {"classifier", "params:threshold", "scaler"}
    session_id = (
        MlflowClient(trained.tracking.tracking_uri).get_run(trained.result.run_id).data.tags["kedro.session_id"]
    )
    for name in ("classifier", "scaler"):
        path = Path(artifacts[name].path)
        assert path == trained.project.resolve() / "data" / "06_models" / f"{name}.pkl" / session_id / f"{name}.pkl"
        assert artifacts[name].sha256 == sha256_path(path)
        assert artifacts[name].uri == f"runs:/{trained.result.run_id}/kedro_artifacts/{name}/{name}.pkl"


def test_uploaded_copies_hash_like_the_local_files(trained: Trained, tmp_path: Path) -> None:
    for name, record in trained.result.artifacts.items():
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=record.uri,
            dst_path=str(tmp_path / name.replace(":", "_")),
            tracking_uri=trained.tracking.tracking_uri,
        )
        assert sha256_path(local) == record.sha256, name
    threshold = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=trained.result.artifacts["params:threshold"].uri,
            dst_path=str(tmp_path / "threshold"),
            tracking_uri=trained.tracking.tracking_uri,
        )
    )
    assert json.loads(threshold.read_text()) == 0.4


def test_signature_comes_from_the_training_instances_and_the_threshold_param(trained: Trained) -> None:
    signature = trained.result.signature

    assert signature is not None
    inputs = json.loads(signature["inputs"])
    assert len(inputs) == 30
    assert {"name": "mean_radius", "type": "double", "required": True} in inputs
    assert "target" not in {column["name"] for column in inputs}
    params = json.loads(signature["params"])
    assert params == [{"name": "threshold", "type": "double", "default": 0.4, "shape": None}]


def test_one_plain_log_line_per_node_start_and_finish(trained: Trained) -> None:
    assert "Node fit_classifier started" in trained.logs
    assert any(re.fullmatch(r"Node fit_classifier finished in \d+\.\d\ds", line) for line in trained.logs)
    assert sum(line.startswith("Node ") and " started" in line for line in trained.logs) == 8


def test_our_kedro_hook_is_switched_off_while_training_runs(trained: Trained) -> None:
    assert trained.hook_disabled_during_run == "true"
    assert DISABLE_ENV_VAR not in os.environ


def test_tracking_settings_are_restored_after_training(trained: Trained) -> None:
    assert mlflow.active_run() is None
    assert "MLFLOW_TRACKING_URI" not in os.environ


# -- a failing node ------------------------------------------------------------------------------------------------


def test_failing_node_is_named_with_its_original_error_and_the_run_failed(example_project: Path, store: str) -> None:
    tracking = TrackingConfig(store)

    with pytest.raises(
        KedroRunError, match=re.escape("Kedro node 'fit_classifier' of pipeline 'training' failed")
    ) as info:
        run_training(example_project, tracking=tracking, runtime_params={"C": -1.0}, experiment_name="failing")

    assert isinstance(info.value.__cause__, ValueError)
    assert "'C' parameter of LogisticRegression" in str(info.value.__cause__)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("failing").experiment_id])
    assert run.info.status == "FAILED"
    assert run.info.run_id in str(info.value)
    assert run.data.params["C"] == "-1.0"
    assert mlflow.active_run() is None


# -- versions, scratch data dir, unversioned artifacts, resuming a run ------------------------------------------------


class _ConcurrentWriterRunner(SequentialRunner):
    """After the pipeline ran, write a newer classifier version, as a concurrent run would."""

    def __init__(self, models_dir: Path) -> None:
        super().__init__()
        self.models_dir = models_dir

    def run(self, *args: Any, **kwargs: Any) -> Any:
        outputs = super().run(*args, **kwargs)
        newer = self.models_dir / "classifier.pkl" / "9999-12-31T23.59.59.999Z" / "classifier.pkl"
        newer.parent.mkdir(parents=True)
        newer.write_bytes(b"another run's classifier")
        return outputs


def test_artifacts_are_this_runs_versions_in_the_scratch_dir_and_unversioned_ones_warn(
    example_project: Path, tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    catalog_file = example_project / "conf" / "base" / "catalog.yml"
    catalog = yaml.safe_load(catalog_file.read_text())
    catalog["scaler"]["versioned"] = False
    catalog_file.write_text(yaml.safe_dump(catalog))
    scratch = tmp_path / "scratch"
    tracking = TrackingConfig(store)
    client = MlflowClient(store)
    existing = client.create_run(client.create_experiment("resumed")).info.run_id

    with caplog.at_level(logging.WARNING, logger="airflow_kedro_mlflow"):
        result = run_training(
            example_project,
            tracking=tracking,
            runtime_params={"data_dir": str(scratch)},
            run_id=existing,
            runner=_ConcurrentWriterRunner(scratch / "06_models"),
        )

    assert result.run_id == existing
    assert client.get_run(existing).info.status == "FINISHED"
    assert "9999" not in result.artifacts["classifier"].path
    assert Path(result.artifacts["classifier"].path).parent.parent == scratch / "06_models" / "classifier.pkl"
    assert result.artifacts["scaler"].path == str(scratch / "06_models" / "scaler.pkl")
    assert not (example_project / "data" / "06_models" / "scaler.pkl").exists()
    assert result.runtime_params == {"data_dir": str(scratch)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Artifact 'scaler'" in w and "not versioned" in w for w in warnings)
    assert not any("Artifact 'classifier'" in w for w in warnings)


# -- bad input fails before any MLflow run ---------------------------------------------------------------------------


def _no_runs(tracking_uri: str) -> bool:
    client = MlflowClient(tracking_uri)
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pipeline_name": "trainig"}, KedroProjectError, "Did you mean 'training'?"),
        ({"env": "prod"}, KedroProjectError, "Kedro env 'prod' does not exist"),
        ({"node_names": "fit_clasifier"}, KedroProjectError, "fit_clasifier"),
        ({"runner": "FastRunner"}, KedroProjectError, "Unknown Kedro runner 'FastRunner'"),
        ({"runner": "os.system"}, KedroProjectError, "not in an allowed module"),
        ({"run_id": "0" * 32}, MlflowRunNotFoundError, f"MLflow run '{'0' * 32}' does not exist"),
    ],
)
def test_bad_input_fails_before_any_run(
    example_project: Path, empty_store: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs = {"pipeline_name": "training", **kwargs}
    pipeline_name = kwargs.pop("pipeline_name")

    with pytest.raises(error, match=re.escape(message)):
        run_training(example_project, pipeline_name, tracking=TrackingConfig(empty_store), **kwargs)

    assert _no_runs(empty_store)


def test_artifact_that_could_never_be_shipped_fails_before_training(example_project: Path, empty_store: str) -> None:
    catalog_file = example_project / "conf" / "base" / "catalog.yml"
    catalog = yaml.safe_load(catalog_file.read_text())
    del catalog["scaler"]  # now an in-memory dataset: gone when the run ends
    catalog_file.write_text(yaml.safe_dump(catalog))

    with pytest.raises(ArtifactNotFoundError, match=re.escape("'scaler'")):
        run_training(example_project, tracking=TrackingConfig(empty_store))

    assert _no_runs(empty_store)
    assert not (example_project / "data" / "01_raw" / "breast_cancer.csv").exists()


def test_not_a_kedro_project_is_named(tmp_path: Path, empty_store: str) -> None:
    with pytest.raises(KedroProjectError, match=re.escape(f"{tmp_path} is not a Kedro project")):
        run_training(tmp_path, tracking=TrackingConfig(empty_store))


def test_unreachable_tracking_server_fails_first(example_project: Path) -> None:
    tracking = TrackingConfig(f"http://admin:pw-not-shown@127.0.0.1:{free_port()}", max_retries=0, timeout=5)

    with pytest.raises(
        MlflowServerUnavailableError, match=re.escape("Cannot reach the MLflow tracking server at http://127.0.0.1:")
    ) as info:
        run_training(example_project, tracking=tracking)

    assert "pw-not-shown" not in str(info.value)
    assert not (example_project / "data" / "01_raw" / "breast_cancer.csv").exists()


def test_plain_pipeline_records_no_artifacts(example_project: Path, store: str) -> None:
    registry = example_project / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text(
        registry.read_text().replace('"inference": inference_pipeline,', '"plain": training.create_pipeline(),')
    )

    result = run_training(example_project, "plain", tracking=TrackingConfig(store), node_names="load_raw_data")

    assert result.artifacts == {}
    assert result.input_name is None
    assert result.signature is None
    assert MlflowClient(store).get_run(result.run_id).info.status == "FINISHED"


@pytest.mark.parametrize(
    ("runner", "expected"),
    [(None, SequentialRunner), ("ThreadRunner", ThreadRunner), ("kedro.runner.SequentialRunner", SequentialRunner)],
)
def test_runner_names_resolve_to_runner_instances(runner: Any, expected: type) -> None:
    assert type(_resolve_runner(runner, "kedro_classifier")) is expected


def test_runner_instances_and_classes_are_accepted() -> None:
    instance = ThreadRunner()

    assert _resolve_runner(instance, "kedro_classifier") is instance
    assert isinstance(_resolve_runner(ThreadRunner, "kedro_classifier"), ThreadRunner)


def test_a_retry_marks_the_run_its_killed_try_left_running_as_failed(example_project: Path, tmp_path: Path) -> None:
    """A SIGKILLed worker cannot end its run: the next try of the same task does, and leaves other runs alone."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment_id = client.create_experiment("kedro_classifier")
    identity = {"airflow.dag_id": "retrain", "airflow.dag_run_id": "manual__2026-11-23T10:00:00+00:00",
                "airflow.map_index": "-1"}  # fmt: skip
    killed = client.create_run(experiment_id, tags={**identity, "airflow.task_id": "train", "airflow.try_number": "1"})
    other_task = client.create_run(experiment_id, tags={**identity, "airflow.task_id": "other"})

    result = run_training(
        example_project,
        "training",
        tracking=TrackingConfig(store),
        mlflow_tags={**identity, "airflow.task_id": "train", "airflow.try_number": "2"},
    )

    stale = client.get_run(killed.info.run_id)
    assert stale.info.status == "FAILED"
    assert stale.data.tags["airflow_kedro_mlflow.failed_reason"] == "superseded by a retry of this task"
    assert client.get_run(other_task.info.run_id).info.status == "RUNNING"
    assert client.get_run(result.run_id).info.status == "FINISHED"
