"""The example DAGs, run with ``dag.test()`` on a migrated Airflow DB against a real ``mlflow server`` with basic auth.

What crosses tasks is only XCom and MLflow: a third DAG (written below into the temporary DAGs folder) damages or
removes training's local files between training and modelify, as another worker without a shared disk would see
them. The connection's password must never show up in task output, XCom, rendered fields or the logged model.
The DAGs in ``tests/integration/dags/`` are copied there too: one maps training and modelify over hyperparameters.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_PROJECT, REPO_ROOT
from tests.integration.airflow_db import migrated_airflow
from tests.servers import MLFLOW_ADMIN_USER, MlflowServer

# Airflow reads AIRFLOW_HOME (and derives its sqlite DB from it) when first imported: keep it out of ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="akm-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

pytestmark = pytest.mark.integration

ON_DEMAND = "kedro_classifier_on_demand"
RETRAINING = "kedro_classifier_retraining"
ARTIFACTS_DAG = "akm_test_artifacts_between_workers"
MAPPED_DAG = "akm_test_mapped_training"  # tests/integration/dags/akm_test_mapped_training.py
FAILED_SWEEP_DAG = "akm_test_failed_sweep"  # tests/integration/dags/akm_test_failed_sweep.py
SHARED_RUN_DAG = "akm_test_shared_run"  # tests/integration/dags/akm_test_shared_run.py
TEST_DAGS = Path(__file__).resolve().parent / "dags"

# Trains once, then: tampers with the classifier file (modelify must refuse it), then deletes every local file
# training wrote (modelify must rebuild the same model from the copies in MLflow).
ARTIFACTS_DAG_SOURCE = f'''
"""Test-only DAG: what modelify does when training's local files are modified or gone."""

from __future__ import annotations

import os
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_kedro_mlflow.operators.kedro import KedroModelifyOperator, KedroTrainingOperator


def tamper_classifier(ti):
    Path(ti.xcom_pull(task_ids="train")["artifacts"]["classifier"]["path"]).write_bytes(b"not the trained model")


def remove_local_artifacts(ti):
    for record in ti.xcom_pull(task_ids="train")["artifacts"].values():
        Path(record["path"]).unlink(missing_ok=True)  # params files live in a temp dir training already removed


with DAG("{ARTIFACTS_DAG}", schedule=None, render_template_as_native_obj=True):
    train = KedroTrainingOperator(
        task_id="train", project_path=os.environ["AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT"], experiment_name="akm_it"
    )
    tamper = PythonOperator(task_id="tamper_classifier", python_callable=tamper_classifier)
    modelify_tampered = KedroModelifyOperator(
        task_id="modelify_tampered", training_task_id="train", registered_model_name="akm_tampered"
    )
    remove = PythonOperator(
        task_id="remove_local_artifacts", python_callable=remove_local_artifacts, trigger_rule="all_done"
    )
    modelify_remote = KedroModelifyOperator(
        task_id="modelify_without_local_files",
        training_task_id="train",
        registered_model_name="akm_no_shared_disk",
        log_model_kwargs={{"name": "no_shared_disk"}},  # the training run holds modelify_tampered's "model" already
    )
    train >> tamper >> modelify_tampered >> remove >> modelify_remote
'''


@dataclass
class DagRunOutcome:
    """What one ``dag.test()`` left behind: states, XComs, rendered fields and everything the tasks printed.

    ``task_states`` and ``xcoms`` are keyed by task id (one mapped instance wins); ``mapped_states`` and
    ``mapped_xcoms`` also by map index, for mapped tasks.
    """

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    xcoms: dict[tuple[str, str], Any]
    rendered: dict[str, Any]
    output: str
    mapped_states: dict[tuple[str, int], str]
    mapped_xcoms: dict[tuple[str, int, str], Any]


@dataclass
class AirflowEnv:
    dags_folder: Path
    project: Path
    server: MlflowServer
    env: dict[str, str]

    @property
    def password(self) -> str:
        return self.server.admin_password

    def tracking(self):
        from airflow_kedro_mlflow.tracking import TrackingConfig

        return TrackingConfig(self.server.uri, username=MLFLOW_ADMIN_USER, password=self.password)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, mlflow_auth_server: MlflowServer) -> Iterator[AirflowEnv]:
    """A migrated Airflow DB, a DAGs folder with the example DAGs, a private project copy, the MLflow connection."""
    root = tmp_path_factory.mktemp("airflow-dags")
    dags_folder = root / "dags"
    dags_folder.mkdir()
    for dag_file in [*(REPO_ROOT / "dags_examples").glob("*.py"), *TEST_DAGS.glob("*.py")]:
        shutil.copy(dag_file, dags_folder)
    (dags_folder / f"{ARTIFACTS_DAG}.py").write_text(textwrap.dedent(ARTIFACTS_DAG_SOURCE))
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))

    env = {
        "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
        "AIRFLOW_KEDRO_MLFLOW_EXAMPLE_PROJECT": str(project),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_auth_server.airflow_conn_uri(),  # cleared per test; set per DAG run
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    with migrated_airflow(dags_folder, env):
        yield AirflowEnv(dags_folder=dags_folder, project=project, server=mlflow_auth_server, env=env)


@pytest.fixture(scope="module")
def dagbag(airflow_env: AirflowEnv):
    from airflow.dag_processing.dagbag import DagBag

    # The champion-scoring DAG names its asset's registry from the connection when it is parsed.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", airflow_env.env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
        return DagBag(dag_folder=str(airflow_env.dags_folder))


@contextmanager
def _capture_all_output() -> Iterator[io.StringIO]:
    """Collect what a DAG run writes: log records (any logger), ``print`` and child processes' fds 1 and 2."""
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stream:
        saved_fds = [os.dup(1), os.dup(2)]
        saved_streams = sys.stdout, sys.stderr
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        root.addHandler(handler)
        try:
            yield records
        finally:
            root.removeHandler(handler)
            stream.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            stream.seek(0)
            records.write(stream.read())


def _run_dag(airflow_env: AirflowEnv, dagbag, dag_id: str, run_conf: dict[str, Any] | None = None) -> DagRunOutcome:
    """``dag.test()`` with the connection set, collecting everything the run wrote meanwhile."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with pytest.MonkeyPatch.context() as patch, _capture_all_output() as captured:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", airflow_env.env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
        dag_run = dagbag.dags[dag_id].test(run_conf=run_conf)
    output = captured.getvalue()

    with create_session() as session:
        task_instances = dag_run.get_task_instances(session=session)
        mapped_states = {(ti.task_id, ti.map_index): str(ti.state) for ti in task_instances}
        task_states = {task_id: state for (task_id, _), state in mapped_states.items()}
        xcom_rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dag_run.run_id).all()
        mapped_xcoms = {(row.task_id, row.map_index, row.key): XComModel.deserialize_value(row) for row in xcom_rows}
        xcoms = {(task_id, key): value for (task_id, _, key), value in mapped_xcoms.items()}
        rendered_rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=dag_run.run_id)
        rendered = {row.task_id: row.rendered_fields for row in rendered_rows}
    return DagRunOutcome(
        dag_id, dag_run.run_id, str(dag_run.state), task_states, xcoms, rendered, output, mapped_states, mapped_xcoms
    )


@pytest.fixture(scope="module")
def on_demand_run(airflow_env, dagbag) -> DagRunOutcome:
    conf = {"C": 0.25, "threshold": 0.4, "registered_model_name": "akm_on_demand", "experiment": "akm_on_demand"}
    return _run_dag(airflow_env, dagbag, ON_DEMAND, run_conf=conf)


@pytest.fixture(scope="module")
def retraining_run(airflow_env, dagbag) -> DagRunOutcome:
    return _run_dag(airflow_env, dagbag, RETRAINING, run_conf={"registered_model_name": "akm_retraining"})


@pytest.fixture(scope="module")
def artifacts_run(airflow_env, dagbag) -> DagRunOutcome:
    return _run_dag(airflow_env, dagbag, ARTIFACTS_DAG)


@pytest.fixture(scope="module")
def mapped_run(airflow_env, dagbag) -> DagRunOutcome:
    return _run_dag(airflow_env, dagbag, MAPPED_DAG)


@pytest.fixture
def client(airflow_env):
    tracking = airflow_env.tracking()
    with tracking.activate():
        yield tracking.client()


def _features(rows: int = 5):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    return frame.drop(columns=["target"]).head(rows)


def _assert_succeeded(outcome: DagRunOutcome) -> None:
    assert outcome.state == "success", f"{outcome.task_states}\n{outcome.output[-6000:]}"


def test_dag_folder_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {ON_DEMAND, RETRAINING, ARTIFACTS_DAG, MAPPED_DAG} <= set(dagbag.dag_ids)


def test_retraining_dag_is_weekly_without_catchup(dagbag):
    dag = dagbag.dags[RETRAINING]
    assert dag.catchup is False
    assert dag.timetable.expression == "0 0 * * 0"  # @weekly
    assert [task.task_id for task in dag.topological_sort()] == ["train", "modelify", "promote"]


def test_on_demand_dag_params_are_typed_and_described(dagbag):
    dag = dagbag.dags[ON_DEMAND]
    assert dag.render_template_as_native_obj is True
    params = dag.params
    assert {"experiment", "kedro_env", "registered_model_name", "C", "threshold"} <= set(params.keys())
    for name in ("experiment", "kedro_env", "registered_model_name", "C", "threshold"):
        assert params.get_param(name).description, name
    assert params.get_param("C").schema["type"] == "number"
    assert params.get_param("threshold").schema == {"type": "number", "minimum": 0, "maximum": 1}


def test_on_demand_run_passes_typed_params_to_kedro(on_demand_run, client):
    _assert_succeeded(on_demand_run)
    training = on_demand_run.xcoms[("train", "return_value")]
    data_dir = training["runtime_params"].pop("data_dir")
    assert training["runtime_params"] == {"C": 0.25, "threshold": 0.4}
    assert isinstance(training["runtime_params"]["C"], float)
    # each try trains in its own data root, so concurrent runs never share intermediate files
    assert data_dir.endswith("/try-1") and "/data/runs/" in data_dir
    assert training["artifacts"]["classifier"]["path"].startswith(data_dir)
    run = client.get_run(training["run_id"])
    assert run.data.params["C"] == "0.25"
    assert run.data.params["threshold"] == "0.4"
    assert run.data.tags["airflow.dag_id"] == ON_DEMAND
    assert run.data.tags["airflow.dag_run_id"] == on_demand_run.run_id
    assert client.get_experiment(run.info.experiment_id).name == "akm_on_demand"


def test_on_demand_run_registers_promotes_and_serves_champion(on_demand_run, client, airflow_env):
    import mlflow

    _assert_succeeded(on_demand_run)
    modelified = on_demand_run.xcoms[("modelify", "return_value")]
    decision = on_demand_run.xcoms[("promote", "return_value")]
    versions = client.search_model_versions("name = 'akm_on_demand'")
    assert [str(v.version) for v in versions] == [str(modelified["version"])]
    version = client.get_model_version("akm_on_demand", modelified["version"])
    assert version.run_id == on_demand_run.xcoms[("train", "return_value")]["run_id"]
    assert {
        "airflow.dag_id": ON_DEMAND,
        "airflow.dag_run_id": on_demand_run.run_id,
        "kedro.env": "local",
        "kedro.pipeline_name": "training",
        "promotion.decision": "promoted",
    }.items() <= version.tags.items()
    assert set(version.aliases) == {"challenger", "champion"}
    assert decision["decision"] == "promoted"

    with airflow_env.tracking().activate():
        model = mlflow.pyfunc.load_model("models:/akm_on_demand@champion")
        predictions = model.predict(_features())
    assert list(predictions.columns) == ["probability", "prediction"]
    assert set(predictions["prediction"]) <= {0, 1}
    assert ((predictions["probability"] >= 0.4) == (predictions["prediction"] == 1)).all()


def test_on_demand_run_links_point_at_the_mlflow_ui(on_demand_run, airflow_env):
    _assert_succeeded(on_demand_run)
    training = on_demand_run.xcoms[("train", "return_value")]
    run_url = f"{airflow_env.server.uri}/#/experiments/{training['experiment_id']}/runs/{training['run_id']}"
    assert on_demand_run.xcoms[("train", "_link_MlflowRunLink")] == run_url
    version = on_demand_run.xcoms[("modelify", "return_value")]["version"]
    version_url = f"{airflow_env.server.uri}/#/models/akm_on_demand/versions/{version}"
    assert on_demand_run.xcoms[("modelify", "_link_MlflowModelVersionLink")] == version_url
    assert on_demand_run.xcoms[("promote", "_link_MlflowModelVersionLink")] == version_url


def test_password_never_leaves_the_connection(on_demand_run, airflow_env, client, tmp_path):
    import mlflow

    _assert_succeeded(on_demand_run)
    password = airflow_env.password
    assert "Training pipeline 'training'" in on_demand_run.output  # the capture did see the task logs
    assert password not in on_demand_run.output
    assert password not in json.dumps([[*key, value] for key, value in on_demand_run.xcoms.items()], default=str)
    assert password not in json.dumps(on_demand_run.rendered, default=str)
    training = on_demand_run.xcoms[("train", "return_value")]
    run = client.get_run(training["run_id"])
    assert password not in json.dumps([run.data.params, run.data.tags])
    model_uri = on_demand_run.xcoms[("modelify", "return_value")]["model_uri"]
    with airflow_env.tracking().activate():
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path)))
    files = [path for path in model_dir.rglob("*") if path.is_file()]
    assert files
    assert not [path for path in files if password.encode() in path.read_bytes()]


def test_retraining_run_registers_challenger_and_promotes_first_version(retraining_run, client):
    _assert_succeeded(retraining_run)
    modelified = retraining_run.xcoms[("modelify", "return_value")]
    version = client.get_model_version("akm_retraining", modelified["version"])
    assert set(version.aliases) == {"challenger", "champion"}
    assert retraining_run.xcoms[("promote", "decision")] == "promoted"


def test_retrying_modelify_in_the_same_dag_run_creates_no_second_version(retraining_run, airflow_env, client):
    _assert_succeeded(retraining_run)
    retry = subprocess.run(
        [sys.executable, "-m", "airflow", "tasks", "test", RETRAINING, "modelify", retraining_run.run_id],
        env={**os.environ, **airflow_env.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert retry.returncode == 0, retry.stdout[-4000:] + retry.stderr[-4000:]
    assert "Reusing model" in retry.stdout + retry.stderr
    assert airflow_env.password not in retry.stdout + retry.stderr
    versions = client.search_model_versions(
        f"name = 'akm_retraining' AND tags.`airflow.dag_run_id` = '{retraining_run.run_id}'"
    )
    assert [str(v.version) for v in versions] == [str(retraining_run.xcoms[("modelify", "return_value")]["version"])]


def test_tampered_local_artifact_is_replaced_by_the_training_runs_copy(artifacts_run, airflow_env, client, tmp_path):
    """A local file that no longer hashes as the training run's manifest says is never shipped: the run's copy is."""
    import mlflow

    from airflow_kedro_mlflow.model import sha256_path

    assert artifacts_run.task_states["train"] == "success", artifacts_run.output[-6000:]
    assert artifacts_run.task_states["modelify_tampered"] == "success", artifacts_run.output[-6000:]
    assert "Artifact 'classifier'" in artifacts_run.output
    assert "Downloading the run's copy instead" in artifacts_run.output
    (version,) = client.search_model_versions("name = 'akm_tampered'")
    expected = artifacts_run.xcoms[("train", "return_value")]["artifacts"]["classifier"]
    with airflow_env.tracking().activate():
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/akm_tampered/{version.version}",
                                                             dst_path=str(tmp_path)))  # fmt: skip
    (shipped,) = model_dir.rglob(Path(expected["path"]).name)
    assert sha256_path(shipped) == expected["sha256"]


def test_modelify_without_training_files_rebuilds_the_same_model_from_mlflow(
    artifacts_run, airflow_env, client, tmp_path
):
    import mlflow

    from airflow_kedro_mlflow.model import sha256_path

    assert artifacts_run.task_states["remove_local_artifacts"] == "success"
    assert artifacts_run.task_states["modelify_without_local_files"] == "success", artifacts_run.output[-6000:]
    training = artifacts_run.xcoms[("train", "return_value")]
    assert not any(Path(record["path"]).exists() for record in training["artifacts"].values())
    modelified = artifacts_run.xcoms[("modelify_without_local_files", "return_value")]
    with airflow_env.tracking().activate():
        model_dir = Path(mlflow.artifacts.download_artifacts(modelified["model_uri"], dst_path=str(tmp_path)))
        predictions = mlflow.pyfunc.load_model(modelified["model_uri"]).predict(_features())
    for name in ("scaler", "classifier"):
        expected = training["artifacts"][name]
        (shipped,) = model_dir.rglob(Path(expected["path"]).name)
        assert sha256_path(shipped) == expected["sha256"], name
    assert len(predictions) == 5


def test_mapped_trainings_each_finish_their_own_run_and_get_their_own_version(mapped_run, client):
    """Mapped instances are distinct tasks: no run superseded by a sibling, modelify ``i`` models training ``i``."""
    _assert_succeeded(mapped_run)
    indexes = range(3)
    assert {mapped_run.mapped_states[(task, i)] for task in ("train", "modelify") for i in indexes} == {"success"}
    trainings = [mapped_run.mapped_xcoms[("train", i, "return_value")] for i in indexes]
    assert [training["runtime_params"]["C"] for training in trainings] == [0.5, 1.0, 2.0]

    experiment = client.get_experiment_by_name("akm_mapped")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`airflow.map_index` != ''")
    assert len(runs) == 3
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert not [run for run in runs if "airflow_kedro_mlflow.failed_reason" in run.data.tags]
    by_id = {run.info.run_id: run for run in runs}
    for i, training in enumerate(trainings):
        tags = by_id[training["run_id"]].data.tags
        assert (tags["airflow.task_id"], tags["airflow.map_index"]) == ("train", str(i))
        assert by_id[training["run_id"]].data.params["C"] == str(training["runtime_params"]["C"])

    modelified = [mapped_run.mapped_xcoms[("modelify", i, "return_value")] for i in indexes]
    assert [result["run_id"] for result in modelified] == [training["run_id"] for training in trainings]
    versions = client.search_model_versions("name = 'akm_mapped'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    assert sorted(str(result["version"]) for result in modelified) == ["1", "2", "3"]
    for i, result in enumerate(modelified):
        version = client.get_model_version("akm_mapped", result["version"])
        assert version.run_id == trainings[i]["run_id"]
        assert version.tags["airflow.map_index"] == str(i)


def test_a_sweep_nests_its_trainings_under_one_parent_and_modelifies_the_best(mapped_run, client):
    """Three mapped trainings are children of one FINISHED parent run; ``select_best_by`` builds the most accurate."""
    _assert_succeeded(mapped_run)
    trainings = [mapped_run.mapped_xcoms[("train", i, "return_value")] for i in range(3)]
    experiment = client.get_experiment_by_name("akm_mapped")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`airflow_kedro_mlflow.sweep` = 'parent'"
    )
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "training sweep"
    assert (parent.data.tags["airflow.dag_run_id"], parent.data.tags["airflow.task_id"]) == (mapped_run.run_id, "train")
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(run.info.run_id for run in children) == sorted(training["run_id"] for training in trainings)

    accuracy = {run.info.run_id: run.data.metrics["accuracy"] for run in children}
    best_accuracy = max(accuracy.values())
    best = next(training["run_id"] for training in trainings if accuracy[training["run_id"]] == best_accuracy)
    assert parent.data.tags["airflow_kedro_mlflow.best_run_id"] == best
    assert parent.data.metrics["accuracy"] == best_accuracy
    result = mapped_run.xcoms[("modelify_best", "return_value")]
    assert (result["run_id"], result["registered_model_name"]) == (best, "akm_mapped_best")
    assert client.get_model_version("akm_mapped_best", result["version"]).run_id == best


def test_a_sweep_whose_every_trial_failed_fails_modelify_with_the_reason(airflow_env, dagbag, client):
    outcome = _run_dag(airflow_env, dagbag, FAILED_SWEEP_DAG)

    assert outcome.state == "failed"
    assert {outcome.mapped_states[("train", i)] for i in range(2)} == {"failed"}
    assert outcome.task_states["modelify_best"] == "failed"  # it ran (trigger rule all_done) and said why
    assert "SweepError: every training of sweep 'train' failed in dag run" in outcome.output
    experiment = client.get_experiment_by_name("akm_failed_sweep")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`airflow_kedro_mlflow.sweep` = 'parent'"
    )
    assert parent.info.status == "FAILED"


def test_a_training_task_logs_into_the_run_another_task_started(airflow_env, dagbag, client):
    """``run_id`` shares one MLflow run between tasks: the training's params, metrics and artifacts join it."""
    outcome = _run_dag(airflow_env, dagbag, SHARED_RUN_DAG)

    _assert_succeeded(outcome)
    run_id = outcome.xcoms[("start_run", "return_value")]
    assert outcome.xcoms[("train", "return_value")]["run_id"] == run_id
    assert outcome.xcoms[("train", "run_id")] == run_id
    experiment = client.get_experiment_by_name("akm_shared_run")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["prepared_rows"] == "569"
    assert run.data.params["C"] and "accuracy" in run.data.metrics
    assert run.data.tags["airflow.task_id"] == "train"
    assert client.list_artifacts(run_id, "kedro_artifacts")
