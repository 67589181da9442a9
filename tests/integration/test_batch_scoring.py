"""MlflowBatchPredictOperator in a DAG run (``dag.test()``, migrated Airflow DB) against a real ``mlflow server``.

The example project is trained and registered once (``champion`` on version 1); a test-only DAG (written below into a
temporary DAGs folder) scores a CSV larger than one chunk. Running the DAG again for the same logical date reruns the
same DAG run (its task is cleared, as a retry): it overwrites its own output. A run for another date is refused the
same output path, leaving it intact; missing columns and an unresolvable model URI fail the task with their message
and write nothing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_PROJECT
from tests.integration.airflow_db import migrated_airflow
from tests.servers import MlflowServer

if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="akm-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

pytestmark = pytest.mark.integration

DAG_ID = "akm_test_batch_scoring"
MODEL = "akm_batch_scoring"
DAG_SOURCE = f'''
"""Test-only DAG: score a table with a registered model."""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_kedro_mlflow.operators.scoring import MlflowBatchPredictOperator

with DAG(
    "{DAG_ID}",
    schedule=None,
    render_template_as_native_obj=True,
    params={{"model_uri": "models:/{MODEL}@champion", "input_path": "", "output_path": "", "chunk_size": 100}},
):
    MlflowBatchPredictOperator(
        task_id="score",
        model_uri="{{{{ params.model_uri }}}}",
        input_path="{{{{ params.input_path }}}}",
        output_path="{{{{ params.output_path }}}}",
        chunk_size="{{{{ params.chunk_size }}}}",
    )
'''


@dataclass
class ScoringEnv:
    dags_folder: Path
    project: Path
    server: MlflowServer
    conn: str
    model_run_id: str

    @property
    def instances(self) -> Path:
        return self.project / "data" / "05_model_input" / "instances.csv"


@dataclass
class Outcome:
    state: str
    run_id: str
    xcom: Any
    output: str


@pytest.fixture(scope="module")
def scoring_env(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> Iterator[ScoringEnv]:
    """A migrated Airflow DB, the test DAG, the example project trained and registered on the server."""
    from airflow_kedro_mlflow.kedro_project import open_session
    from airflow_kedro_mlflow.modelify import modelify
    from airflow_kedro_mlflow.tracking import TrackingConfig

    root = tmp_path_factory.mktemp("batch-scoring")
    dags_folder = root / "dags"
    dags_folder.mkdir()
    (dags_folder / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_SOURCE))
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open_session(project) as session:
        session.run(pipeline_names=["training"])
    tracking = TrackingConfig(mlflow_server.uri)
    result = modelify(project, "training", tracking=tracking, registered_model_name=MODEL, aliases=["champion"])

    with migrated_airflow(dags_folder, {}):
        yield ScoringEnv(dags_folder, project, mlflow_server, mlflow_server.airflow_conn_uri(), result.run_id)


@pytest.fixture(scope="module")
def dag(scoring_env: ScoringEnv):
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(scoring_env.dags_folder))
    assert dagbag.import_errors == {}
    return dagbag.dags[DAG_ID]


def run(scoring_env: ScoringEnv, dag, capfd, logical_date: datetime, **conf: Any) -> Outcome:
    """``dag.test()`` for ``logical_date`` (the same date reruns the same DAG run); collect state, XCom and output."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", scoring_env.conn)
        dag_run = dag.test(run_after=logical_date, logical_date=logical_date, run_conf=conf)
    captured = capfd.readouterr()
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=dag_run.run_id, task_id="score", key="return_value")
            .one_or_none()
        )
        xcom = XComModel.deserialize_value(row) if row is not None else None
    return Outcome(str(dag_run.state), dag_run.run_id, xcom, captured.out + captured.err)


def scored(scoring_env: ScoringEnv, version: str = "1"):
    import mlflow
    import pandas as pd

    from airflow_kedro_mlflow.tracking import TrackingConfig

    data = pd.read_csv(scoring_env.instances)
    with TrackingConfig(scoring_env.server.uri).activate():
        predictions = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(data)
    return pd.concat([data, predictions.reset_index(drop=True)], axis=1)


def test_dag_scores_a_csv_larger_than_a_chunk_retry_overwrites_other_run_is_refused(scoring_env, dag, capfd, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from airflow_kedro_mlflow.scoring import PathLocation, read_record

    output = tmp_path / "scores.parquet"
    conf = {"input_path": str(scoring_env.instances), "output_path": str(output)}
    first_date = datetime(2026, 11, 1, tzinfo=timezone.utc)

    first = run(scoring_env, dag, capfd, first_date, **conf)

    assert first.state == "success", first.output[-6000:]
    rows = len(pd.read_csv(scoring_env.instances))
    assert rows > 100  # more than one chunk
    assert first.xcom == {
        "model_uri": f"models:/{MODEL}/1",
        "requested_model_uri": f"models:/{MODEL}@champion",
        "registered_model_name": MODEL,
        "version": "1",
        "run_id": scoring_env.model_run_id,
        "rows": rows,
        "input": str(scoring_env.instances),
        "output": str(output),
        "output_format": "parquet",
        "engine": "pandas",
        "tracking_uri": scoring_env.server.uri,
        "model_version_url": f"{scoring_env.server.uri}/#/models/{MODEL}/versions/1",
    }
    pd.testing.assert_frame_equal(pd.read_parquet(output), scored(scoring_env))
    assert pq.read_metadata(output).num_row_groups == -(-rows // 100)
    record = read_record(PathLocation(str(output)))
    assert record["task_identity"]["airflow.dag_run_id"] == first.run_id
    assert (record["version"], record["run_id"], record["rows"]) == ("1", scoring_env.model_run_id, rows)

    retry = run(scoring_env, dag, capfd, first_date, **conf)  # same DAG run, task cleared and run again

    assert retry.state == "success", retry.output[-6000:]
    assert retry.run_id == first.run_id
    pd.testing.assert_frame_equal(pd.read_parquet(output), scored(scoring_env))  # replaced, not appended
    assert read_record(PathLocation(str(output)))["written_at"] >= record["written_at"]
    before = output.read_bytes()

    other = run(scoring_env, dag, capfd, datetime(2026, 11, 2, tzinfo=timezone.utc), **conf)

    assert other.state == "failed"
    assert f"ScoringOutputError: output {output} already exists and it was written by" in other.output
    assert f"airflow.dag_run_id='{first.run_id}'" in other.output
    assert output.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [".scores.parquet.scoring.json", "scores.parquet"]


def test_missing_columns_fail_the_task_and_write_nothing(scoring_env, dag, capfd, tmp_path):
    import pandas as pd

    source = tmp_path / "instances.csv"
    pd.read_csv(scoring_env.instances).drop(columns=["mean_radius"]).to_csv(source, index=False)
    output = tmp_path / "out" / "scores.parquet"

    outcome = run(
        scoring_env, dag, capfd, datetime(2026, 11, 3, tzinfo=timezone.utc), input_path=str(source),
        output_path=str(output),
    )  # fmt: skip

    assert outcome.state == "failed"
    assert (
        f"ScoringInputError: input {source} lacks column(s) ['mean_radius'] that the signature of model "
        f"models:/{MODEL}/1 requires" in outcome.output
    )
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_unresolvable_model_uri_fails_the_task_naming_it(scoring_env, dag, capfd, tmp_path):
    output = tmp_path / "scores.parquet"
    outcome = run(
        scoring_env, dag, capfd, datetime(2026, 11, 4, tzinfo=timezone.utc), model_uri=f"models:/{MODEL}@retired",
        input_path=str(scoring_env.instances), output_path=str(output),
    )  # fmt: skip

    assert outcome.state == "failed"
    assert f"ModelUriError: model_uri 'models:/{MODEL}@retired' resolves to no model" in outcome.output
    assert list(tmp_path.iterdir()) == []
