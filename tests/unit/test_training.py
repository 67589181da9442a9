"""run_training: a real Kedro session of the example project, in a real (sqlite) MLflow store."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import shutil
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.runner import SequentialRunner, ThreadRunner
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from airflow_kedro_mlflow.exceptions import (
    ArtifactNotFoundError,
    KedroProjectError,
    KedroRunError,
    MlflowRunNotFoundError,
    MlflowServerUnavailableError,
    TrainingXComError,
)
from airflow_kedro_mlflow.kedro_hooks import DISABLE_ENV_VAR
from airflow_kedro_mlflow.links.mlflow import MLFLOW_RUN_URL_KEY
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.operators.kedro import RUN_ID_KEY, KedroModelifyOperator, KedroTrainingOperator
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.tracking.runs import share_run_with_thread, unshare_run_with_thread
from airflow_kedro_mlflow.training import run_training
from airflow_kedro_mlflow.training.controls import resolve_runner as _resolve_runner
from airflow_kedro_mlflow.training.observer import SAMPLE_ROWS, bounded_sample
from airflow_kedro_mlflow.training_result import TrainingResult
from tests.conftest import EXAMPLE_PROJECT
from tests.servers import free_port
from tests.unit.airflow.conftest import RecordingTaskInstance, make_context


def _copy_project(target: Path) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


class _RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class _EnvSpyRunner(ThreadRunner):
    """A ThreadRunner (nodes in worker threads) that remembers an environment variable as the pipeline runs."""

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
def store(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store: Callable[..., str]) -> Iterator[str]:
    """A sqlite MLflow store shared by this module's runs (each test looks at its own run or experiment).

    The module works in a temporary directory: a sqlite store puts its artifacts in ``./mlruns``.
    """
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        yield new_mlflow_store(folder)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store: Callable[..., str]) -> str:
    """A sqlite MLflow store that must stay without runs: bad input is refused before any run starts."""
    return new_mlflow_store(tmp_path_factory.mktemp("empty-store"))


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
    assert params == [
        {"name": "threshold", "type": "double", "default": 0.4, "shape": None},
        {"name": "runner", "type": "string", "default": "SequentialRunner", "shape": None},
    ]


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


# -- nodes in worker threads ---------------------------------------------------------------------------------------


def test_node_metrics_land_on_the_training_run_under_thread_runner(trained: Trained) -> None:
    """The shared training ran with a ThreadRunner: ``evaluate`` logged its metrics from a worker thread."""
    run = MlflowClient(trained.tracking.tracking_uri).get_run(trained.result.run_id)

    assert set(run.data.metrics) == {"accuracy", "f1"}
    assert run.info.status == "FINISHED"  # ended once, by its owner, after every node


def test_a_run_shared_with_a_thread_is_active_there_and_ended_only_by_its_owner(tracking_uri: str) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    seen: dict[str, Any] = {}

    def node() -> None:
        seen["before"] = mlflow.active_run()
        seen["shared"] = share_run_with_thread(owner)
        seen["again"] = share_run_with_thread(owner)  # already active here: nothing pushed
        seen["active"] = mlflow.active_run().info.run_id
        mlflow.log_metric("accuracy", 0.9)
        unshare_run_with_thread(owner.info.run_id)
        seen["after"] = mlflow.active_run()

    with mlflow.start_run() as owner:
        worker = threading.Thread(target=node)
        worker.start()
        worker.join()
        assert client.get_run(owner.info.run_id).info.status == "RUNNING"
        assert mlflow.active_run() is owner

    assert seen == {"before": None, "shared": True, "again": False, "active": owner.info.run_id, "after": None}
    run = client.get_run(owner.info.run_id)
    assert run.data.metrics == {"accuracy": 0.9}
    assert run.info.status == "FINISHED"


# -- the training input is kept as a bounded sample ----------------------------------------------------------------


def _frame_with_late_missing_values(rows: int = 1000) -> pd.DataFrame:
    """Columns of several dtypes whose only missing value comes after the sample, next to complete ones."""
    frame = pd.DataFrame(
        {
            "width": np.linspace(0.0, 1.0, rows),
            "count": np.arange(rows),
            "label": pd.Series(["a", "b"] * (rows // 2), dtype=object),
            "text": pd.Series(["x", "y"] * (rows // 2), dtype="string"),
            "seen": pd.date_range("2026-01-01", periods=rows, freq="h"),
            "level": pd.Series([1, 2] * (rows // 2), dtype="Int64"),
            "complete": np.ones(rows),
        }
    )
    frame.loc[700, "width"] = np.nan
    frame.loc[800, "label"] = None
    frame.loc[850, "text"] = pd.NA
    frame.loc[900, "seen"] = pd.NaT
    frame.loc[950, "level"] = pd.NA
    return frame


def test_bounded_sample_infers_the_same_signature_as_the_whole_frame() -> None:
    frame = _frame_with_late_missing_values()

    sample = bounded_sample(frame)

    assert len(sample) == SAMPLE_ROWS
    assert infer_signature(sample) == infer_signature(frame)
    assert not infer_signature(frame).inputs.input_dict()["width"].required  # the case a plain head() gets wrong
    pd.testing.assert_frame_equal(sample.iloc[:-1], frame.iloc[: SAMPLE_ROWS - 1])


def test_bounded_sample_of_a_series_and_an_array_infers_the_same_signature() -> None:
    frame = _frame_with_late_missing_values()
    array = np.arange(3000.0).reshape(1000, 3)

    assert infer_signature(bounded_sample(frame["width"])) == infer_signature(frame["width"])
    assert bounded_sample(array).shape == (SAMPLE_ROWS, 3)
    assert infer_signature(bounded_sample(array)) == infer_signature(array)
    small = frame.head(10)
    pd.testing.assert_frame_equal(bounded_sample(small), small)


@pytest.mark.parametrize(
    "wrap", [lambda values: pd.DataFrame(values, copy=False), lambda values: values], ids=["pandas", "numpy"]
)
def test_bounded_sample_keeps_no_reference_to_the_input(wrap: Callable[[np.ndarray], Any]) -> None:
    values = np.random.default_rng(0).random((1000, 4))
    alive = weakref.ref(values)
    data = wrap(values)

    sample = bounded_sample(data)
    del data, values
    gc.collect()

    assert alive() is None
    assert len(sample) == SAMPLE_ROWS


# -- a failing node ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_failing_node_is_named_the_run_failed_and_its_link_pushed_before_the_failure(
    example_project: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator publishes the run id and link as soon as the run exists: a failed training links to its run."""
    ui_url = "https://mlflow.example.org"
    conn = {"conn_type": "mlflow", "extra": {"tracking_uri": store, "ui_url": ui_url}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    operator = KedroTrainingOperator(
        task_id="train", project_path=str(example_project), runtime_params={"C": -1.0}, experiment_name="failing"
    )
    ti = RecordingTaskInstance(task_id="train")

    with pytest.raises(
        KedroRunError, match=re.escape("Kedro node 'fit_classifier' of pipeline 'training' failed")
    ) as info:
        operator.execute(make_context(ti))

    assert isinstance(info.value.__cause__, ValueError)
    assert "'C' parameter of LogisticRegression" in str(info.value.__cause__)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("failing").experiment_id])
    assert run.info.status == "FAILED"
    assert run.info.run_id in str(info.value)
    assert run.data.params["C"] == "-1.0"
    assert mlflow.active_run() is None
    assert ti.xcoms[("train", RUN_ID_KEY)] == run.info.run_id
    run_url = f"{ui_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert ti.xcoms[("train", MLFLOW_RUN_URL_KEY)] == run_url
    assert ("train", "return_value") not in ti.xcoms


def test_an_unmapped_modelify_after_a_mapped_training_says_to_map_it() -> None:
    """Airflow hands every map index's payload to an unmapped task: it cannot tell which training to modelify."""
    from airflow.sdk import DAG

    with DAG("mapped_then_unmapped", schedule=None):
        KedroTrainingOperator.partial(task_id="train", project_path="/nowhere").expand(runtime_params=[{}, {}])
        modelify = KedroModelifyOperator(task_id="modelify", training_task_id="train")
    ti = RecordingTaskInstance(task_id="modelify")
    ti.xcoms[("train", "return_value")] = [{"run_id": "a"}, {"run_id": "b"}]

    with pytest.raises(TrainingXComError, match=re.escape("training task 'train' is mapped (2 results)")) as info:
        modelify.execute(make_context(ti))

    assert ".expand(run_id=train.output.map(run_id_of))" in str(info.value)
    assert "select_best_by='<metric>'" in str(info.value)


def test_select_best_by_needs_a_mapped_training_task() -> None:
    from airflow.sdk import DAG

    with pytest.raises(TrainingXComError, match="select_best_by='accuracy' but no training_task_id"):
        KedroModelifyOperator(task_id="best", project_path="/p", select_best_by="accuracy")
    with DAG("unmapped_sweep", schedule=None):
        KedroTrainingOperator(task_id="train", project_path="/nowhere")
        best = KedroModelifyOperator(task_id="best", training_task_id="train", select_best_by="accuracy")
    assert best.trigger_rule == "all_done"  # failed trials must not stop the best of the others

    with pytest.raises(TrainingXComError, match="training task 'train' is not mapped"):
        best.execute(make_context(RecordingTaskInstance(task_id="best")))


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


def _read_a_lookup_file_in_training_and_inference(project: Path) -> None:
    """Make both pipelines drop the columns listed in ``dropped_columns``, a read-only JSON file (like stopwords)."""
    lookup = project / "data" / "01_raw" / "dropped_columns.json"
    lookup.write_text("[]")
    catalog_file = project / "conf" / "base" / "catalog.yml"
    catalog = yaml.safe_load(catalog_file.read_text())
    catalog["dropped_columns"] = {"type": "json.JSONDataset", "filepath": str(lookup)}
    catalog_file.write_text(yaml.safe_dump(catalog))
    drop = (
        "\n\ndef drop_columns(instances, dropped_columns):\n    return instances.drop(columns=list(dropped_columns))\n"
    )
    package = project / "src" / "kedro_classifier" / "pipelines"
    inference = package / "inference" / "pipeline.py"
    inference.write_text(
        inference.read_text().replace(
            'node(scale, inputs=["instances", "scaler"]',
            'node(drop_columns, inputs=["instances", "dropped_columns"], outputs="kept", name="drop_columns"),\n'
            '            node(scale, inputs=["kept", "scaler"]',
        )
        + drop
    )
    training = package / "training" / "pipeline.py"
    training.write_text(
        training.read_text().replace(
            "            node(evaluate,",
            '            node(drop_columns, inputs=["instances", "dropped_columns"], outputs="kept_training",\n'
            '                 name="drop_training_columns"),\n'
            "            node(evaluate,",
        )
        + drop
    )


@pytest.mark.slow
def test_artifacts_are_this_runs_versions_in_the_scratch_dir_and_only_unversioned_produced_ones_warn(
    example_project: Path, tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    catalog_file = example_project / "conf" / "base" / "catalog.yml"
    catalog = yaml.safe_load(catalog_file.read_text())
    catalog["scaler"]["versioned"] = False
    catalog_file.write_text(yaml.safe_dump(catalog))
    _read_a_lookup_file_in_training_and_inference(example_project)
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
    # read-only: training never writes it, so concurrent runs cannot overwrite it; still shipped with the model
    assert "dropped_columns" in result.artifacts
    assert not any("Artifact 'dropped_columns'" in w for w in warnings)


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
        ({"runner": "ParallelRunner"}, KedroProjectError, "runner 'ParallelRunner' runs Kedro nodes in separate"),
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


@pytest.mark.slow
def test_a_retry_marks_the_run_its_killed_try_left_running_as_failed(example_project: Path, tracking_uri: str) -> None:
    """A SIGKILLed worker cannot end its run: the next try of the same task does, and leaves other runs alone.

    The task is mapped instance 1: its siblings (other map indexes) run at the same time and are other tasks.
    """
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("kedro_classifier")
    task = {"airflow.dag_id": "retrain", "airflow.dag_run_id": "manual__2026-11-23T10:00:00+00:00",
            "airflow.task_id": "train"}  # fmt: skip

    def running(map_index: str, try_number: str, **tags: str) -> str:
        run_tags = {**task, "airflow.map_index": map_index, "airflow.try_number": try_number, **tags}
        return client.create_run(experiment_id, tags=run_tags).info.run_id

    killed = running("1", "1")
    live_sibling = running("0", "1")
    later_try = running("1", "3")  # a try that started after this one (this worker was wrongly declared dead)
    other_task = running("1", "1", **{"airflow.task_id": "other"})

    result = run_training(
        example_project,
        "training",
        tracking=TrackingConfig(tracking_uri),
        mlflow_tags={**task, "airflow.map_index": "1", "airflow.try_number": "2"},
    )

    stale = client.get_run(killed)
    assert stale.info.status == "FAILED"
    assert stale.data.tags["airflow_kedro_mlflow.failed_reason"] == "superseded by a retry of this task"
    for untouched in (live_sibling, later_try, other_task):
        assert client.get_run(untouched).info.status == "RUNNING"
        assert "airflow_kedro_mlflow.failed_reason" not in client.get_run(untouched).data.tags
    assert client.get_run(result.run_id).info.status == "FINISHED"
