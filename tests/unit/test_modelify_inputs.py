"""modelify's inputs that are not to be trusted as given: a training XCom, runtime params, copy_mode.

One real training run (``run_training`` into a sqlite store) of a copy of the example project; every test forges or
overrides one input and checks what modelify does with it, before and instead of logging anything.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from airflow_kedro_mlflow.exceptions import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    KedroPipelineModelError,
    KedroProjectError,
)
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.modelify import modelify, resolve_training_artifacts
from airflow_kedro_mlflow.tracking import TrackingConfig
from airflow_kedro_mlflow.training import run_training
from airflow_kedro_mlflow.training_result import ArtifactRecord, TrainingResult
from tests.conftest import EXAMPLE_PROJECT


@dataclass
class Trained:
    project: Path
    tracking: TrackingConfig
    result: TrainingResult

    def training(self) -> TrainingResult:
        """A fresh copy of the training XCom, as the modelify task would read it (safe to forge)."""
        return TrainingResult.from_xcom(self.result.to_xcom())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, new_mlflow_store: Callable[..., str]) -> Iterator[Trained]:
    """The example project trained once by run_training; its conf has an env where ``threshold`` is a string."""
    root = tmp_path_factory.mktemp("inputs")
    project = root / "kedro_classifier"
    shutil.copytree(EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (project / "conf" / "strings").mkdir()
    (project / "conf" / "strings" / "parameters.yml").write_text('threshold: "0.5"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # a sqlite store keeps its artifacts in ./mlruns
        tracking = TrackingConfig(new_mlflow_store(root))
        result = run_training(project, tracking=tracking, experiment_name="inputs-training")
        yield Trained(project, tracking, result)
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def experiment_name(request: pytest.FixtureRequest) -> str:
    return "exp_" + re.sub(r"\W", "_", request.node.name)[:60]


def logged_models(trained: Trained, experiment_id: str) -> list[str]:
    return sorted(model.model_id for model in trained.tracking.client().search_logged_models([experiment_id]))


def resolve(trained: Trained, training: TrainingResult, download_dir: Path) -> dict[str, str]:
    """resolve_training_artifacts with the catalog of the project's session, as modelify calls it."""
    with training.spec.session() as session, trained.tracking.activate():
        paths, _ = resolve_training_artifacts(training, download_dir, catalog=session.load_context().catalog)
    return paths


# -- a forged training XCom (issue 10, item 2) ---------------------------------------------------------------------


def test_training_records_a_manifest_of_its_artifacts_in_the_run(trained, tmp_path):
    from airflow_kedro_mlflow.training_result import MANIFEST_PATH

    with trained.tracking.activate():
        manifest = mlflow.artifacts.load_dict(f"runs:/{trained.result.run_id}/{MANIFEST_PATH}")
    assert manifest == {
        "classifier": {"file": "classifier/classifier.pkl", "sha256": trained.result.artifacts["classifier"].sha256},
        "params:threshold": {
            "file": "params_threshold/params_threshold.json",
            "sha256": trained.result.artifacts["params:threshold"].sha256,
        },
        "scaler": {"file": "scaler/scaler.pkl", "sha256": trained.result.artifacts["scaler"].sha256},
    }


def test_local_artifact_where_the_catalog_keeps_it_is_used(trained, tmp_path):
    paths = resolve(trained, trained.training(), tmp_path)

    for name in ("classifier", "scaler"):
        assert paths[name] == str(Path(trained.result.artifacts[name].path).resolve())
    assert Path(paths["params:threshold"]).is_relative_to(tmp_path)  # parameters always come from the run


@pytest.mark.parametrize("forgery", ["copy outside the catalog", "parent traversal", "symlinked version folder"])
def test_forged_path_outside_the_catalog_is_ignored_and_the_runs_copy_used(trained, tmp_path, caplog, forgery):
    real = Path(trained.result.artifacts["classifier"].path)
    outside = tmp_path / "outside" / "v1" / "classifier.pkl"
    outside.parent.mkdir(parents=True)
    shutil.copyfile(real, outside)  # same bytes, so the sha256 the XCom gives is the right one
    dataset_dir = real.parent.parent  # <filepath>/<version>/<basename>
    symlink = dataset_dir / "2099-01-01T00.00.00.000Z"
    if forgery == "copy outside the catalog":
        forged = str(outside)
    elif forgery == "parent traversal":
        forged = f"{real.parent}/{os.path.relpath(outside, real.parent)}"
    else:
        symlink.symlink_to(outside.parent, target_is_directory=True)
        forged = str(symlink / "classifier.pkl")
    training = trained.training()
    training.artifacts["classifier"].path = forged

    try:
        with caplog.at_level(logging.INFO, logger="airflow_kedro_mlflow"):
            paths = resolve(trained, training, tmp_path / "downloads")
    finally:
        if symlink.is_symlink():
            symlink.unlink()  # a version folder Kedro would take as the latest

    assert Path(paths["classifier"]).is_relative_to(tmp_path / "downloads")
    assert sha256_path(paths["classifier"]) == trained.result.artifacts["classifier"].sha256
    assert "not the file this project's catalog resolves 'classifier' to" in caplog.text
    assert paths["scaler"] == str(Path(trained.result.artifacts["scaler"].path).resolve())  # not forged: used


def test_xcom_sha256_differing_from_the_runs_manifest_is_refused(trained, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n", encoding="utf-8")
    training = trained.training()
    training.artifacts["classifier"] = ArtifactRecord(path=str(secret), uri=str(secret), sha256=sha256_path(secret))

    with pytest.raises(ArtifactIntegrityError, match=rf"artifact 'classifier' .* MLflow run {trained.result.run_id}"):
        resolve(trained, training, tmp_path / "downloads")
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").rglob("*"))


def test_xcom_naming_an_artifact_the_run_did_not_record_is_refused(trained, tmp_path):
    training = trained.training()
    training.artifacts["extra"] = replace(training.artifacts["classifier"])

    with pytest.raises(ArtifactIntegrityError, match=r"\['extra'\].* did not record"):
        resolve(trained, training, tmp_path)


def test_run_without_a_manifest_is_refused(trained, tmp_path):
    client = trained.tracking.client()
    run = client.create_run(trained.result.experiment_id)
    client.set_terminated(run.info.run_id, "FINISHED")
    training = replace(trained.training(), run_id=run.info.run_id)

    with pytest.raises(ArtifactNotFoundError, match=rf"MLflow run {run.info.run_id} has no kedro_artifacts/manifest"):
        resolve(trained, training, tmp_path)


# -- runtime params: types and a smoke prediction (item 8) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime_params", "message"),
    [
        ({"threshold": 1, "max_iter": 200.0, "C": 2}, None),  # int and float are interchangeable
        (
            {"threshold": "abc"},
            "runtime param 'threshold'='abc' is a str, but the project's parameters have 0.5 (a number)",
        ),
        ({"C": True}, "runtime param 'C'=True is a bool, but the project's parameters have 1.0 (a number)"),
        ({"test_size": [0.1]}, "runtime param 'test_size'=[0.1] is a list"),
    ],
)
def test_runtime_params_keep_the_type_of_the_projects_parameters(trained, runtime_params, message):
    spec = KedroRunSpec(str(trained.project), runtime_params=runtime_params)
    if message is None:
        with spec.session():
            return
    with pytest.raises(KedroProjectError, match=re.escape(message)), spec.session():
        pass


def test_wrongly_typed_runtime_param_is_refused_before_anything_is_logged(trained, experiment_name):
    with pytest.raises(KedroProjectError, match=re.escape("'threshold'='abc' is a str")):
        modelify(
            trained.project,
            "training",
            tracking=trained.tracking,
            experiment_name=experiment_name,
            runtime_params={"threshold": "abc"},
        )
    assert trained.tracking.client().get_experiment_by_name(experiment_name) is None


def test_training_refuses_a_wrongly_typed_runtime_param_before_any_run(trained, new_mlflow_store, tmp_path):
    tracking = TrackingConfig(new_mlflow_store(tmp_path))

    with pytest.raises(KedroProjectError, match=re.escape("'C'='0.5' is a str")):  # a DAG rendering strings
        run_training(trained.project, tracking=tracking, runtime_params={"C": "0.5"}, experiment_name="typed")
    assert tracking.client().get_experiment_by_name("typed") is None


def test_model_that_cannot_predict_is_not_logged_nor_registered(trained, experiment_name):
    # parameters.yml of env "strings" says threshold is a string, so "abc" passes the type check; the node fails.
    with pytest.raises(
        KedroPipelineModelError,
        match=r"node 'predict' .*ValueError: could not convert string to float: 'abc'",
    ):
        modelify(
            trained.project,
            "training",
            env="strings",
            tracking=trained.tracking,
            experiment_name=experiment_name,
            registered_model_name=experiment_name,
            runtime_params={"threshold": "abc"},
        )
    client = trained.tracking.client()
    experiment = client.get_experiment_by_name(experiment_name)
    assert client.search_runs([experiment.experiment_id]) == []
    assert logged_models(trained, experiment.experiment_id) == []
    assert client.search_registered_models(f"name = '{experiment_name}'") == []


# -- runtime params that change a trained value (item 9) -----------------------------------------------------------


def test_runtime_param_only_inference_reads_from_artifacts_is_applied(trained):
    result = modelify(
        None, None, tracking=trained.tracking, training=trained.training(), runtime_params={"threshold": 0.9}
    )

    with trained.tracking.activate():
        model = mlflow.pyfunc.load_model(result.model_uri)
    predictions = model.predict(pd.read_csv(trained.project / "data" / "05_model_input" / "instances.csv"))
    assert ((predictions["probability"] >= 0.9) == (predictions["prediction"] == 1)).all()
    assert predictions["probability"].between(0.5, 0.9, inclusive="left").any()  # 0.5 would decide these otherwise


def test_runtime_param_training_used_for_an_artifact_is_refused(trained):
    before = logged_models(trained, trained.result.experiment_id)

    with pytest.raises(
        KedroProjectError,
        match=rf"'C'=0.1 was used by training run {trained.result.run_id} .*'classifier'.* Re-run training",
    ):
        modelify(None, None, tracking=trained.tracking, training=trained.training(), runtime_params={"C": 0.1})
    assert logged_models(trained, trained.result.experiment_id) == before


# -- unknown runtime params (item 10) and options checked before any side effect (item 11) -------------------------


def test_unknown_runtime_param_warns_with_a_close_match(trained, caplog):
    spec = KedroRunSpec(str(trained.project), runtime_params={"Cc": 0.5, "data_dir": "data"})

    with caplog.at_level(logging.WARNING, logger="airflow_kedro_mlflow"), spec.session():
        pass

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # data_dir is read by the catalog as ${runtime_params:data_dir}
    assert "runtime param 'Cc' is not a parameter of" in warnings[0]
    assert "Did you mean 'C'?" in warnings[0]


def test_bad_copy_mode_leaves_no_experiment_run_or_model(trained, experiment_name):
    with pytest.raises(KedroPipelineModelError, match=re.escape("copy_mode='deep' is not valid")):
        modelify(trained.project, "training", tracking=trained.tracking, experiment_name=experiment_name,
                 copy_mode="deep")  # fmt: skip
    assert trained.tracking.client().get_experiment_by_name(experiment_name) is None

    before = logged_models(trained, trained.result.experiment_id)
    with pytest.raises(KedroPipelineModelError, match=re.escape("copy_mode names ['nope']")):
        modelify(None, None, tracking=trained.tracking, training=trained.training(), copy_mode={"nope": "copy"})
    assert logged_models(trained, trained.result.experiment_id) == before
