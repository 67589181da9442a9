"""score_batch() and MlflowBatchPredictOperator with the example project's registered model in a sqlite store.

Training and registering the model takes seconds, so every test here is ``slow`` (run by the integration tier).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_kedro_mlflow.exceptions import ModelUriError, ScoringInputError, ScoringOutputError
from airflow_kedro_mlflow.scoring import (
    PARQUET_METADATA_KEY,
    DatasetLocation,
    PathLocation,
    read_record,
    score_batch,
)
from airflow_kedro_mlflow.tracking import TrackingConfig
from tests.conftest import EXAMPLE_PROJECT

pytestmark = pytest.mark.slow

MODEL = "scoring_clf"
IDENTITY = {
    "airflow.dag_id": "scoring",
    "airflow.dag_run_id": "manual__1",
    "airflow.task_id": "score",
    "airflow.map_index": "-1",
    "airflow.try_number": "1",
}
#: Catalog entries the tests add to the project: a chunked CSV input and two outputs.
EXTRA_CATALOG = """
instances_chunked:
  type: pandas.CSVDataset
  filepath: data/05_model_input/instances.csv
  load_args:
    chunksize: 100

scores:
  type: pandas.ParquetDataset
  filepath: data/07_model_output/scores.parquet

versioned_scores:
  type: pandas.ParquetDataset
  filepath: data/07_model_output/versioned_scores.parquet
  versioned: true
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from airflow_kedro_mlflow.kedro_project import open_session

    target = tmp_path_factory.mktemp("scoring") / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (target / "conf" / "local" / "catalog_scoring.yml").write_text(EXTRA_CATALOG)
    with open_session(target) as session:
        session.run(pipeline_names=["training"])
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store, project: Path) -> Iterator[TrackingConfig]:
    """A sqlite store holding two versions of the example model; ``champion`` on version 2."""
    from airflow_kedro_mlflow.modelify import modelify

    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        tracking = TrackingConfig(tracking_uri=new_mlflow_store(root))
        first = modelify(project, "training", tracking=tracking, registered_model_name=MODEL)
        with tracking.activate():
            client = tracking.client()
            source = client.get_model_version(MODEL, first.version)
            second = client.create_model_version(MODEL, source.source, run_id=source.run_id, model_id=source.model_id)
            client.set_registered_model_alias(MODEL, "champion", second.version)
        yield tracking
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def instances(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "05_model_input" / "instances.csv")


def predicted(tracking: TrackingConfig, data: pd.DataFrame, model_uri: str = f"models:/{MODEL}/2") -> pd.DataFrame:
    with tracking.activate():
        model = mlflow.pyfunc.load_model(model_uri)
    return pd.concat([data.reset_index(drop=True), model.predict(data).reset_index(drop=True)], axis=1)


def test_alias_is_resolved_once_and_chunked_scores_equal_predict(store, project, instances, tmp_path):
    output = tmp_path / "scores.parquet"
    result = score_batch(
        f"models:/{MODEL}@champion",
        project / "data" / "05_model_input" / "instances.csv",
        output,
        tracking=store,
        chunk_size=100,  # 426 rows: five chunks
        task_identity=IDENTITY,
    )

    with store.activate():
        run_id = store.client().get_model_version(MODEL, "2").run_id
    assert result.to_xcom() == {
        "model_uri": f"models:/{MODEL}/2",
        "requested_model_uri": f"models:/{MODEL}@champion",
        "registered_model_name": MODEL,
        "version": "2",
        "run_id": run_id,
        "rows": len(instances),
        "input": str(project / "data" / "05_model_input" / "instances.csv"),
        "output": str(output),
        "output_format": "parquet",
        "engine": "pandas",
        "tracking_uri": store.tracking_uri,
        "model_version_url": None,
    }
    pd.testing.assert_frame_equal(pd.read_parquet(output), predicted(store, instances))
    record = read_record(PathLocation(str(output)))
    assert record is not None
    assert {key: record[key] for key in ("model_uri", "version", "run_id", "rows", "task_identity")} == {
        "model_uri": f"models:/{MODEL}/2",
        "version": "2",
        "run_id": run_id,
        "rows": len(instances),
        "task_identity": IDENTITY,
    }
    assert json.loads(pq.read_metadata(output).metadata[PARQUET_METADATA_KEY.encode()]) == record
    assert pq.read_metadata(output).num_row_groups == 5


def test_retry_overwrites_and_another_run_is_refused(store, project, tmp_path):
    source = project / "data" / "05_model_input" / "instances.csv"
    output = tmp_path / "scores.csv"
    score_batch(f"models:/{MODEL}/1", source, output, tracking=store, task_identity=IDENTITY)
    retry = score_batch(
        f"models:/{MODEL}/2", source, output, tracking=store, task_identity={**IDENTITY, "airflow.try_number": "2"}
    )
    assert len(pd.read_csv(output)) == retry.rows  # replaced, not appended
    assert read_record(PathLocation(str(output)))["version"] == "2"

    before = output.read_bytes()
    with pytest.raises(ScoringOutputError, match=re.escape(f"output {output} already exists and it was written by")):
        score_batch(
            f"models:/{MODEL}/1", source, output, tracking=store, task_identity={**IDENTITY, "airflow.dag_run_id": "x"}
        )
    assert output.read_bytes() == before


def test_missing_columns_fail_before_anything_is_written(store, instances, tmp_path):
    source = tmp_path / "instances.parquet"
    instances.drop(columns=["mean_radius", "worst_area"]).to_parquet(source)

    with pytest.raises(ScoringInputError) as raised:
        score_batch(f"models:/{MODEL}@champion", source, tmp_path / "out" / "scores.parquet", tracking=store)
    assert str(raised.value).startswith(
        f"input {source} lacks column(s) ['mean_radius', 'worst_area'] that the signature of model "
        f"models:/{MODEL}/2 requires; the input has ["
    )
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("model_uri", "message"),
    [
        (f"models:/{MODEL}@retired", f"model_uri 'models:/{MODEL}@retired' resolves to no model on the tracking"),
        (f"models:/{MODEL}/99", f"model_uri 'models:/{MODEL}/99' resolves to no model on the tracking server"),
        ("models:/no_such_model/latest", "registered model 'no_such_model' has no versions"),
        ("runs:/0123abcd/model", "model_uri 'runs:/0123abcd/model' resolves to no model on the tracking server"),
    ],
)
def test_unresolvable_model_uri_is_named(store, project, tmp_path, model_uri, message):
    with pytest.raises(ModelUriError, match=re.escape(message)):
        score_batch(
            model_uri, project / "data" / "05_model_input" / "instances.csv", tmp_path / "o.csv", tracking=store
        )
    assert list(tmp_path.iterdir()) == []


def test_kedro_datasets_chunked_input_and_output(store, project, instances):
    result = score_batch(
        f"models:/{MODEL}/2",
        DatasetLocation("instances_chunked", str(project)),
        DatasetLocation("scores", str(project)),
        tracking=store,
        task_identity=IDENTITY,
    )
    output = project / "data" / "07_model_output" / "scores.parquet"
    assert (result.output, result.rows) == (str(output), len(instances))
    assert result.input == f"dataset 'instances_chunked' of Kedro project {project}"
    pd.testing.assert_frame_equal(pd.read_parquet(output), predicted(store, instances))
    assert pq.read_metadata(output).num_row_groups == 5  # the dataset's own chunks of 100 rows


def test_kedro_output_that_cannot_be_written_in_place_is_refused(store, project, tmp_path):
    with pytest.raises(ScoringOutputError, match=re.escape("is a versioned pandas.ParquetDataset entry")):
        score_batch(f"models:/{MODEL}/2", "in.csv", DatasetLocation("versioned_scores", str(project)), tracking=store)
    with pytest.raises(ScoringInputError, match=re.escape("has no dataset 'instancs' in its catalog (env default)")):
        score_batch(f"models:/{MODEL}/2", DatasetLocation("instancs", str(project)), tmp_path / "o.csv", tracking=store)


# -- the operator ----------------------------------------------------------------------------------------------------


def champion_event(version: str, tracking_uri: str, minutes_ago: int):
    """A triggering asset event as Airflow hands it to the task (the real Task SDK classes)."""
    from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    uri = f"mlflow-model://sqlite/{MODEL}@champion"
    return AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=uri, uri=uri, extra={}),
        extra={
            "registered_model_name": MODEL,
            "alias": "champion",
            "version": version,
            "model_uri": f"models:/{MODEL}/{version}",
            "run_id": None,
            "tracking_uri": tracking_uri,
        },
        source_task_id="promote",
        source_dag_id="retraining",
        source_run_id="scheduled__1",
        source_map_index=-1,
        source_aliases=[],
        timestamp=datetime.now(timezone.utc) - timedelta(minutes=minutes_ago),
    )


def test_operator_scores_with_the_version_of_the_triggering_event(store, project, tmp_path, monkeypatch):
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    from airflow_kedro_mlflow.links.mlflow import MLFLOW_MODEL_VERSION_URL_KEY
    from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator
    from tests.unit.airflow.conftest import RecordingTaskInstance, make_context

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": store.tracking_uri, "ui_url": "http://ui"}}),
    )
    operator = MlflowBatchPredictOperator(
        task_id="score",
        model_uri=f"models:/{MODEL}@champion",  # the alias is on version 2 now
        input_path=str(project / "data" / "05_model_input" / "instances.csv"),
        output_path=str(tmp_path / "scores.parquet"),
        chunk_size="200",
        predict_params={"threshold": 0.9},
    )
    ti = RecordingTaskInstance(task_id="score")
    context = make_context(ti)
    # two promotions consumed by this run: 2 then 1 (a rollback); the last one wins
    events = [champion_event("2", store.tracking_uri, 10), champion_event("1", store.tracking_uri, 5)]
    context["triggering_asset_events"] = TriggeringAssetEventsAccessor.build(events)

    result = operator.execute(context)

    assert (result["model_uri"], result["version"], result["requested_model_uri"]) == (
        f"models:/{MODEL}/1",
        "1",
        f"models:/{MODEL}/1",
    )
    assert ti.xcoms[("score", MLFLOW_MODEL_VERSION_URL_KEY)] == f"http://ui/#/models/{MODEL}/versions/1"
    assert read_record(PathLocation(result["output"]))["task_identity"] == {
        "airflow.dag_id": ti.dag_id,
        "airflow.dag_run_id": ti.run_id,
        "airflow.task_id": "score",
        "airflow.map_index": "-1",
        "airflow.try_number": "1",
    }
    scored = pd.read_parquet(result["output"])
    assert ((scored["probability"] >= 0.9) == (scored["prediction"] == 1)).all()  # predict_params reached the model


def test_operator_needs_exactly_one_input_and_output():
    from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator

    with pytest.raises(ScoringInputError, match=re.escape("'score' needs exactly one input: input_path")):
        MlflowBatchPredictOperator(task_id="score", model_uri="models:/m/1", output_path="o.parquet")
    with pytest.raises(ScoringInputError, match=re.escape("reads a catalog dataset: pass project_path")):
        MlflowBatchPredictOperator(
            task_id="score", model_uri="models:/m/1", input_dataset="instances", output_path="o.parquet"
        )


# -- the CLI -----------------------------------------------------------------------------------------------------------


def test_cli_score_writes_json_and_refuses_another_owner(store, project, tmp_path, capsys):
    from airflow_kedro_mlflow.cli import EXIT_OK, EXIT_USAGE, main

    output = tmp_path / "scores.csv"
    command = ["score", "--model-uri", f"models:/{MODEL}@champion", "--tracking-uri", store.tracking_uri,
               "--input-path", str(project / "data" / "05_model_input" / "instances.csv"),
               "--output-path", str(output), "--chunk-size", "150", "--json", "-q"]  # fmt: skip

    assert main([*command, "--task-identity", "job=nightly-1"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert (payload["model_uri"], payload["rows"], payload["output"]) == (f"models:/{MODEL}/2", 426, str(output))
    assert main([*command, "--task-identity", "job=nightly-1", "--task-identity", "airflow.try_number=2"]) == EXIT_OK
    capsys.readouterr()

    assert main([*command, "--task-identity", "job=nightly-2"]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith(f"Error: ScoringOutputError: output {output} already exists and it was written by job=")
