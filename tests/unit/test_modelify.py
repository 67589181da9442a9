"""modelify(): build the example project's model from a real Kedro session, log/register it in a sqlite store."""

from __future__ import annotations

import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from airflow_kedro_mlflow.exceptions import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    KedroPipelineModelError,
    KedroProjectError,
    MlflowConnectionError,
    MlflowRunConflictError,
    MlflowRunNotFoundError,
    ModelRegistrationError,
)
from airflow_kedro_mlflow.modelify import (
    IDEMPOTENCY_TAG,
    TRAINING_RUN_TAG,
    modelify,
    normalize_log_model_kwargs,
)
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training_result import ArtifactRecord, TrainingResult
from tests.conftest import EXAMPLE_PROJECT

COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def copy_project(target: Path) -> Path:
    shutil.copytree(EXAMPLE_PROJECT, target, ignore=COPY_IGNORE)
    return target


def train(project: Path, **runtime_params: object) -> None:
    """Run the example project's training pipeline in a real Kedro session (no MLflow involved)."""
    from airflow_kedro_mlflow.kedro_project import open_session

    with open_session(project, runtime_params=runtime_params or None) as session:
        session.run(pipeline_names=["training"])


def latest_version_file(project: Path, name: str) -> Path:
    (version_dir,) = sorted((project / "data" / "06_models" / f"{name}.pkl").iterdir())[-1:]
    return version_dir / f"{name}.pkl"


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("trained") / "kedro_classifier")
    train(project)
    return project


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store) -> Iterator[TrackingConfig]:
    """One sqlite store for the module; the cwd is its folder, so MLflow's default ./mlruns artifacts land there."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield TrackingConfig(tracking_uri=new_mlflow_store(root))
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def names(request: pytest.FixtureRequest) -> dict[str, str]:
    """An experiment and a registered model name of this test only, so tests sharing the store stay independent."""
    base = re.sub(r"\W", "_", request.node.name)[:60]
    return {"experiment_name": f"exp_{base}", "registered_model_name": f"model_{base}"}


def instances(project: Path, rows: int = 5) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "05_model_input" / "instances.csv").head(rows)


def expected_predictions(project: Path, data: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """What the inference node functions give with the artifacts on disk (the pipeline's own code, no MLflow)."""
    from kedro_classifier.pipelines.inference.nodes import predict, scale

    scaler = pickle.loads(latest_version_file(project, "scaler").read_bytes())
    classifier = pickle.loads(latest_version_file(project, "classifier").read_bytes())
    return predict(scale(data, scaler), classifier, threshold)


def experiment_runs(client: MlflowClient, experiment_name: str) -> list:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id])


# -- logging -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_modelify_logs_a_model_that_predicts_like_the_pipeline(trained_project, store, names):
    result = modelify(trained_project, "training", tracking=store, experiment_name=names["experiment_name"])

    assert result.registered_model_name is None and result.version is None
    assert result.model_uri == f"models:/{result.model_id}"
    with store.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
        run = store.client().get_run(result.run_id)
    data = instances(trained_project)
    pd.testing.assert_frame_equal(model.predict(data), expected_predictions(trained_project, data))
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.pipeline_name"] == "training"
    assert run.data.tags["kedro.env"] == "local"
    assert model.metadata.get_params_schema().to_dict()[0]["name"] == "threshold"


def test_modelify_ships_project_code_and_pinned_requirements(trained_project, store, names):
    result = modelify(trained_project, "training", tracking=store, experiment_name=names["experiment_name"])

    with store.activate():
        local = Path(mlflow.artifacts.download_artifacts(result.model_uri))
    assert (local / "code" / "kedro_classifier" / "pipelines" / "inference" / "nodes.py").is_file()
    requirements = (local / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("kedro==") for line in requirements)
    assert any(line.startswith("mlflow==") for line in requirements)


@pytest.mark.slow
def test_modelify_registers_a_version_with_aliases_and_tags(trained_project, store, names):
    result = modelify(
        trained_project,
        "training",
        tracking=store,
        experiment_name=names["experiment_name"],
        registered_model_name=names["registered_model_name"],
        aliases=["challenger", "candidate"],
        mlflow_tags={"airflow.dag_id": "retrain", "git.sha": "abc123"},
    )

    name = names["registered_model_name"]
    assert (result.registered_model_name, result.version, result.aliases) == (name, "1", ["challenger", "candidate"])
    assert result.model_uri == f"models:/{name}/1"
    client = store.client()
    version = client.get_model_version_by_alias(name, "challenger")
    assert str(version.version) == "1"
    assert str(client.get_model_version_by_alias(name, "candidate").version) == "1"
    assert version.tags["airflow.dag_id"] == "retrain"
    assert version.tags["kedro.pipeline_name"] == "training"
    assert client.get_run(result.run_id).data.tags["git.sha"] == "abc123"
    with store.activate():
        model = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    data = instances(trained_project, rows=3)
    expected = expected_predictions(trained_project, data, threshold=0.99)
    pd.testing.assert_frame_equal(model.predict(data, params={"threshold": 0.99}), expected)


def test_modelify_into_an_existing_run_keeps_its_status(trained_project, store, names):
    client = store.client()
    experiment_id = client.create_experiment(names["experiment_name"])
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id, "FINISHED")

    result = modelify(trained_project, "training", tracking=store, run_id=run.info.run_id)

    assert result.run_id == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert len(client.search_runs([experiment_id])) == 1


def test_log_model_kwargs_artifact_path_names_the_model_and_signature_none_drops_it(trained_project, store, names):
    result = modelify(
        trained_project,
        "training",
        tracking=store,
        experiment_name=names["experiment_name"],
        log_model_kwargs={"artifact_path": "kedro_classifier_model", "signature": None, "metadata": {"team": "ml"}},
    )

    with store.activate():
        info = mlflow.models.get_model_info(f"runs:/{result.run_id}/kedro_classifier_model")
    assert info.model_id == result.model_id
    assert info.signature is None
    assert info.metadata == {"team": "ml"}


# -- idempotency -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_idempotency_key_reuses_the_model_and_version_of_an_earlier_try(trained_project, store, names):
    kwargs = {
        "tracking": store,
        "experiment_name": names["experiment_name"],
        "registered_model_name": names["registered_model_name"],
        "aliases": ["challenger"],
        "idempotency_key": {"airflow.dag_id": "retrain", "airflow.dag_run_id": "manual__1", "run_id": "abc"},
    }
    first = modelify(trained_project, "training", **kwargs)
    second = modelify(trained_project, "training", **kwargs)
    other_dag_run = modelify(
        trained_project, "training", **{**kwargs, "idempotency_key": {**kwargs["idempotency_key"], "run_id": "new"}}
    )

    assert second.reused and not first.reused
    assert (second.model_id, second.version, second.run_id) == (first.model_id, first.version, first.run_id)
    assert other_dag_run.version == "2"
    client = store.client()
    versions = client.search_model_versions(f"name = '{names['registered_model_name']}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert all(IDEMPOTENCY_TAG in v.tags for v in versions)
    assert len(experiment_runs(client, names["experiment_name"])) == 2


@pytest.mark.slow
def test_idempotent_retry_registers_a_model_an_earlier_try_only_logged(trained_project, store, names):
    key = {"airflow.dag_id": "retrain", "airflow.dag_run_id": "manual__2", "run_id": "xyz"}
    logged = modelify(
        trained_project, "training", tracking=store, experiment_name=names["experiment_name"], idempotency_key=key
    )
    registered = modelify(
        trained_project,
        "training",
        tracking=store,
        experiment_name=names["experiment_name"],
        registered_model_name=names["registered_model_name"],
        idempotency_key=key,
    )

    assert registered.reused
    assert registered.model_id == logged.model_id
    assert registered.version == "1"


# -- training results --------------------------------------------------------------------------------------------------


def training_result_for(project: Path, store: TrackingConfig, experiment_name: str) -> TrainingResult:
    """A training result as run_training publishes it: artifacts uploaded to the run with the run's manifest, paths
    and sha256 recorded."""
    from airflow_kedro_mlflow.model import sha256_path

    client = store.client()
    run = client.create_run(client.create_experiment(experiment_name))
    artifacts = {}
    manifest = {}
    for name in ("scaler", "classifier"):
        path = latest_version_file(project, name)
        with store.activate():
            client.log_artifact(run.info.run_id, str(path), f"kedro_artifacts/{name}")
        artifacts[name] = ArtifactRecord(
            path=str(path), uri=f"runs:/{run.info.run_id}/kedro_artifacts/{name}/{path.name}", sha256=sha256_path(path)
        )
        manifest[name] = {"file": f"{name}/{path.name}", "sha256": artifacts[name].sha256}
    with store.activate():
        client.log_dict(run.info.run_id, manifest, "kedro_artifacts/manifest.json")
    client.set_terminated(run.info.run_id, "FINISHED")
    return TrainingResult(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        tracking_uri=store.tracking_uri,
        project_path=str(project),
        env=None,
        conf_source=None,
        runtime_params={},
        pipeline_name="training",
        input_name="instances",
        artifacts=artifacts,
    )


def test_training_result_local_artifacts_are_used_in_the_training_run(trained_project, store, names):
    training = training_result_for(trained_project, store, names["experiment_name"])

    result = modelify(None, None, tracking=store, training=training, idempotency_key={"airflow.dag_id": "d"})

    assert result.run_id == training.run_id
    version_tags = store.client().get_logged_model(result.model_id).tags
    assert version_tags[TRAINING_RUN_TAG] == training.run_id
    with store.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
    data = instances(trained_project)
    pd.testing.assert_frame_equal(model.predict(data), expected_predictions(trained_project, data))


@pytest.mark.slow
def test_training_result_without_local_files_downloads_them_from_mlflow(tmp_path, trained_project, store, names):
    project = copy_project(tmp_path / "kedro_classifier")
    train(project)
    training = training_result_for(project, store, names["experiment_name"])
    expected = expected_predictions(project, instances(project))
    shutil.rmtree(project / "data" / "06_models")  # another worker: training's files are not here

    result = modelify(project, "training", tracking=store, training=training)

    with store.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
    pd.testing.assert_frame_equal(model.predict(instances(project)), expected)


@pytest.mark.slow
def test_tampered_local_artifact_is_replaced_by_the_runs_copy(tmp_path, trained_project, store, names, caplog):
    project = copy_project(tmp_path / "kedro_classifier")
    train(project)
    training = training_result_for(project, store, names["experiment_name"])
    expected = expected_predictions(project, instances(project))
    tampered = latest_version_file(project, "classifier")
    tampered.write_bytes(tampered.read_bytes() + b"\0")

    with caplog.at_level("WARNING", logger="airflow_kedro_mlflow"):
        result = modelify(project, "training", tracking=store, training=training)

    assert re.search(rf"'classifier': {re.escape(str(tampered))} has sha256 \w+, not the", caplog.text)
    with store.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
    pd.testing.assert_frame_equal(model.predict(instances(project)), expected)


@pytest.mark.slow
def test_tampered_mlflow_copy_raises_integrity_error(tmp_path, trained_project, store, names):
    project = copy_project(tmp_path / "kedro_classifier")
    train(project)
    training = training_result_for(project, store, names["experiment_name"])
    shutil.rmtree(project / "data" / "06_models")
    artifact_root = Path(store.client().get_run(training.run_id).info.artifact_uri.removeprefix("file://"))
    stored = artifact_root / "kedro_artifacts" / "scaler" / "scaler.pkl"
    stored.write_bytes(stored.read_bytes() + b"\0")

    with pytest.raises(ArtifactIntegrityError, match=r"artifact 'scaler' downloaded from runs:/.*recorded \w{64}"):
        modelify(project, "training", tracking=store, training=training)


def test_training_on_another_tracking_server_is_an_error(trained_project, store, names):
    training = training_result_for(trained_project, store, names["experiment_name"])
    training.tracking_uri = "http://user:secret@mlflow.elsewhere:5000"

    with pytest.raises(MlflowConnectionError, match=re.escape("http://mlflow.elsewhere:5000")) as error:
        modelify(trained_project, "training", tracking=store, training=training)
    assert "secret" not in str(error.value)


# -- bad inputs --------------------------------------------------------------------------------------------------------


def test_untrained_project_raises_artifact_not_found_and_leaves_no_run(tmp_path, store, names):
    project = copy_project(tmp_path / "kedro_classifier")

    with pytest.raises(ArtifactNotFoundError, match="run the training pipeline first"):
        modelify(project, "training", tracking=store, experiment_name=names["experiment_name"])
    client = store.client()
    assert experiment_runs(client, names["experiment_name"]) == []


def test_failed_log_model_deletes_its_run_and_partial_model(trained_project, store, names):
    with pytest.raises(Exception, match=re.escape("missing-requirements.txt")):
        modelify(
            trained_project,
            "training",
            tracking=store,
            experiment_name=names["experiment_name"],
            registered_model_name=names["registered_model_name"],
            log_model_kwargs={"pip_requirements": str(trained_project / "missing-requirements.txt")},
        )
    client = store.client()
    experiment = client.get_experiment_by_name(names["experiment_name"])
    assert client.search_runs([experiment.experiment_id]) == []
    assert client.search_logged_models([experiment.experiment_id]) == []
    assert client.search_registered_models(f"name = '{names['registered_model_name']}'") == []


def test_unknown_run_id_raises_run_not_found(trained_project, store):
    with pytest.raises(MlflowRunNotFoundError, match=re.escape("MLflow run '0123456789abcdef' does not exist")):
        modelify(trained_project, "training", tracking=store, run_id="0123456789abcdef")


def test_unknown_pipeline_raises_with_close_matches(trained_project, store):
    with pytest.raises(KedroProjectError, match=r"no pipeline named 'trainig'.*Did you mean 'training'"):
        modelify(trained_project, "trainig", tracking=store)


def test_unknown_env_raises(trained_project, store):
    with pytest.raises(KedroProjectError, match=r"Kedro env 'prod'.* does not exist"):
        modelify(trained_project, "training", tracking=store, env="prod")


def test_path_that_is_not_a_kedro_project_raises(tmp_path, store):
    with pytest.raises(KedroProjectError, match="is not a Kedro project"):
        modelify(tmp_path, "training", tracking=store)


def test_plain_pipeline_without_input_name_raises(trained_project, store):
    with pytest.raises(Exception, match="input_name"):
        modelify(trained_project, "inference", tracking=store)


def test_plain_inference_pipeline_with_input_name_is_logged(trained_project, store, names):
    result = modelify(
        trained_project, "inference", tracking=store, input_name="instances", experiment_name=names["experiment_name"]
    )

    with store.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
    data = instances(trained_project)
    pd.testing.assert_frame_equal(model.predict(data), expected_predictions(trained_project, data))


@pytest.mark.parametrize(
    ("registered_model_name", "aliases", "message"),
    [
        ("bad/name", (), "'bad/name' is not a valid registered model name (found '/')"),
        ("  ", (), "is empty"),
        ("ok_name", ("has space",), "alias 'has space' is not a valid MLflow model alias"),
        ("ok_name", ("v3",), "alias 'v3' is reserved"),
        (None, ("champion",), "need a registered model"),
    ],
)
def test_invalid_registration_raises_before_anything_is_logged(
    trained_project, store, names, registered_model_name, aliases, message
):
    with pytest.raises(ModelRegistrationError, match=re.escape(message)):
        modelify(
            trained_project,
            "training",
            tracking=store,
            experiment_name=names["experiment_name"],
            registered_model_name=registered_model_name,
            aliases=aliases,
        )
    assert store.client().get_experiment_by_name(names["experiment_name"]) is None


def test_unknown_log_model_kwarg_suggests_the_close_one():
    with pytest.raises(KedroPipelineModelError, match=r"'pip_requirement': did you mean 'pip_requirements'"):
        normalize_log_model_kwargs({"pip_requirement": ["x"]})


def test_log_model_kwargs_reject_what_modelify_sets_and_conflicts():
    with pytest.raises(KedroPipelineModelError, match=r"\['artifacts'\] are set by airflow-kedro-mlflow"):
        normalize_log_model_kwargs({"artifacts": {}})
    with pytest.raises(KedroPipelineModelError, match="both artifact_path='a' and name='b'"):
        normalize_log_model_kwargs({"artifact_path": "a", "name": "b"})
    with pytest.raises(KedroPipelineModelError, match="set conda_env and pip_requirements; MLflow accepts only one"):
        normalize_log_model_kwargs({"conda_env": "env.yml", "pip_requirements": ["x"]})
    with pytest.raises(KedroPipelineModelError, match="set extra_pip_requirements and pip_requirements"):
        normalize_log_model_kwargs({"extra_pip_requirements": ["y"], "pip_requirements": ["x"]})
    with pytest.raises(ModelRegistrationError, match="differs from log_model_kwargs"):
        normalize_log_model_kwargs({"registered_model_name": "a"}, registered_model_name="b")
    with pytest.raises(KedroPipelineModelError, match="signature='infer' is not understood"):
        normalize_log_model_kwargs({"signature": "infer"})


def test_log_model_kwargs_registered_model_name_is_used_when_none_is_passed():
    options = normalize_log_model_kwargs({"registered_model_name": "from_kwargs", "artifact_path": "m"})
    assert (options.registered_model_name, options.name) == ("from_kwargs", "m")


def test_failed_registration_removes_the_model_and_the_run_it_created(trained_project, store, names, tmp_path):
    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("a file, so no registry database can be created under it")
    broken_registry = TrackingConfig(
        tracking_uri=store.tracking_uri, registry_uri=f"sqlite:///{not_a_dir / 'registry.db'}"
    )

    with pytest.raises(ModelRegistrationError, match=r"could not register model m-.* File exists"):
        modelify(
            trained_project,
            "training",
            tracking=broken_registry,
            experiment_name=names["experiment_name"],
            registered_model_name=names["registered_model_name"],
        )
    client = store.client()
    experiment = client.get_experiment_by_name(names["experiment_name"])
    assert client.search_runs([experiment.experiment_id]) == []
    assert client.search_logged_models([experiment.experiment_id]) == []


# -- one name, one model per run; model parity with kedro-mlflow (issue 13) --------------------------------------------


def logged_models(client, run) -> list:
    return client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    ).to_list()


def new_run(client, experiment_name: str):
    experiment_id = client.create_experiment(experiment_name)
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run


@pytest.mark.slow
def test_a_second_model_of_the_same_name_in_a_run_is_refused_and_a_retry_reuses_its_own(trained_project, store, names):
    client = store.client()
    run = new_run(client, names["experiment_name"])
    run_id = run.info.run_id
    # What the Kedro hook leaves in its run: a model named "model", without any idempotency key.
    first = modelify(trained_project, "training", tracking=store, run_id=run_id)
    key = {"airflow.dag_id": "retrain", "airflow.dag_run_id": "manual__1", "airflow.task_id": "modelify"}

    with pytest.raises(MlflowRunConflictError) as refused:
        modelify(trained_project, "training", tracking=store, run_id=run_id, idempotency_key=key)

    message = str(refused.value)
    assert run_id in message and "'model'" in message and first.model_id in message
    assert "--model-name" in message and "--run-id" in message
    assert [model.model_id for model in logged_models(client, run)] == [first.model_id]
    with store.activate():
        assert mlflow.models.get_model_info(f"runs:/{run_id}/model").model_id == first.model_id

    # Another name is fine; a retry of that same modelify (same key) reuses its model instead of being refused.
    other = modelify(trained_project, "training", tracking=store, run_id=run_id, idempotency_key=key,
                     log_model_kwargs={"name": "model_2"})  # fmt: skip
    retry = modelify(trained_project, "training", tracking=store, run_id=run_id, idempotency_key=key,
                     log_model_kwargs={"name": "model_2"})  # fmt: skip

    assert retry.reused and retry.model_id == other.model_id
    assert sorted(model.name for model in logged_models(client, run)) == ["model", "model_2"]


def test_modelify_logs_a_few_training_rows_as_input_example_and_mlflow_stops_warning(trained_project, store, names):
    import warnings

    from mlflow.models import Model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = modelify(trained_project, "training", tracking=store, experiment_name=names["experiment_name"])

    assert not [w for w in caught if "input example was not provided" in str(w.message)]
    with store.activate():
        info = mlflow.models.get_model_info(result.model_uri)
        local = mlflow.artifacts.download_artifacts(result.model_uri)
    assert info.saved_input_example_info is not None
    example = Model.load(local).load_input_example(local)
    expected = instances(trained_project, rows=5)
    assert list(example.columns) == list(expected.columns) and len(example) == 5
    assert {param["name"]: param["default"] for param in info.signature.params.to_dict()}["runner"] == (
        "SequentialRunner"
    )
