"""KedroPipelineModel: artifacts, load_context, the fast predict path and its equality with SequentialRunner."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.pipeline import Pipeline, node
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner
from kedro_datasets.pickle import PickleDataset
from mlflow.pyfunc import PythonModelContext

from airflow_kedro_mlflow.exceptions import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    KedroPipelineModelError,
    PipelineMLError,
)
from airflow_kedro_mlflow.model import KedroPipelineModel, sha256_path
from tests.unit.model.classifier_pipeline import (
    classifier_catalog,
    classifier_pipeline_ml,
    inference_pipeline,
    load_features,
    run_inference,
    sample_instances,
    train,
)


def loaded(model: KedroPipelineModel, artifacts: dict[str, str] | None = None) -> KedroPipelineModel:
    """Load ``model`` as MLflow does after unpickling it: a fresh copy, then load_context with artifact paths."""
    paths = artifacts if artifacts is not None else model.extract_pipeline_artifacts()
    fresh = cloudpickle.loads(cloudpickle.dumps(model))
    fresh.load_context(PythonModelContext(artifacts=paths, model_config={}))
    return fresh


# -- construction ------------------------------------------------------------------------------------------------


def test_accepts_a_plain_inference_pipeline_with_input_name(trained_catalog):
    model = KedroPipelineModel(inference_pipeline(), trained_catalog, input_name="instances")
    assert model.artifact_names == ["classifier", "params:threshold", "scaler"]
    assert model.output_name == "predictions"
    assert model.pipeline is model.inference


def test_plain_pipeline_without_input_name_raises(trained_catalog):
    with pytest.raises(KedroPipelineModelError, match=re.escape("['classifier', 'instances', 'params:threshold'")):
        KedroPipelineModel(inference_pipeline(), trained_catalog)


def test_something_else_than_a_pipeline_raises(trained_catalog):
    with pytest.raises(KedroPipelineModelError, match=re.escape("got dict")):
        KedroPipelineModel({"inference": inference_pipeline()}, trained_catalog, input_name="instances")


def test_input_name_outside_inference_raises(trained_catalog):
    with pytest.raises(PipelineMLError, match=re.escape("input_name='instance' is not an input")) as error:
        KedroPipelineModel(inference_pipeline(), trained_catalog, input_name="instance")
    assert "Did you mean 'instances'?" in str(error.value)


def test_catalog_lacking_an_inference_input_raises(pipeline_ml, tmp_path):
    catalog = classifier_catalog(tmp_path)
    catalog = DataCatalog({name: catalog[name] for name in catalog if name != "classifier"})
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'classifier'")) as error:
        KedroPipelineModel(pipeline_ml, catalog)
    assert "run the training pipeline first" in str(error.value)


def test_catalog_lacking_a_parameter_raises(pipeline_ml, tmp_path):
    catalog = classifier_catalog(tmp_path)
    catalog = DataCatalog({name: catalog[name] for name in catalog if name != "params:threshold"})
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Parameter 'params:threshold'")):
        KedroPipelineModel(pipeline_ml, catalog)


def test_memory_dataset_artifact_raises(pipeline_ml, tmp_path):
    catalog = classifier_catalog(tmp_path)
    catalog["classifier"] = MemoryDataset()
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'classifier' is a MemoryDataset")) as error:
        KedroPipelineModel(pipeline_ml, catalog)
    assert "run the training pipeline first" in str(error.value)


@pytest.mark.parametrize(
    ("copy_mode", "message"),
    [
        ("cpy", "copy_mode='cpy' is not valid; use one of 'assign', 'copy', 'deepcopy'"),
        (3, "copy_mode=3 is not valid; use one of 'assign', 'copy', 'deepcopy'"),
        ({"instance": "copy"}, "copy_mode names ['instance'], which are not datasets"),
        ({"instances": "shallow"}, "copy_mode has invalid mode(s) {'instances': 'shallow'}; use one of"),
    ],
)
def test_invalid_copy_mode_raises(pipeline_ml, trained_catalog, copy_mode, message):
    with pytest.raises(KedroPipelineModelError, match=re.escape(message)):
        KedroPipelineModel(pipeline_ml, trained_catalog, copy_mode=copy_mode)


def test_accepts_a_duck_typed_kedro_mlflow_pipeline_ml(trained_catalog):
    class ForeignPipelineML(Pipeline):
        """Stands for kedro-mlflow's PipelineML: a Pipeline with training/inference/input_name attributes."""

    ours = classifier_pipeline_ml()
    foreign = ForeignPipelineML(ours.nodes)
    foreign.training, foreign.inference, foreign.input_name = ours.training, ours.inference, "instances"
    model = KedroPipelineModel(foreign, trained_catalog)
    features, _ = load_features()
    pd.testing.assert_frame_equal(
        loaded(model).predict(None, features), run_inference(ours.inference, trained_catalog, features)
    )


# -- artifacts ---------------------------------------------------------------------------------------------------


def test_extract_resolves_versioned_datasets_to_the_exact_version_file(model, tmp_path):
    artifacts = model.extract_pipeline_artifacts(tmp_path / "params")
    assert sorted(artifacts) == ["classifier", "params:threshold", "scaler"]
    for name in ("scaler", "classifier"):
        path = Path(artifacts[name])
        assert path.is_file() and path.is_absolute()
        assert path.name == f"{name}.pkl" and path.parent.parent.name == f"{name}.pkl"  # <name>.pkl/<version>/
    assert json.loads(Path(artifacts["params:threshold"]).read_text()) == 0.5
    assert Path(artifacts["params:threshold"]).parent == (tmp_path / "params").resolve()
    assert model.artifact_sha256 == {name: sha256_path(path) for name, path in artifacts.items()}


def test_extract_follows_a_pinned_load_version(pipeline_ml, tmp_path):
    catalog = classifier_catalog(tmp_path / "data")
    train(pipeline_ml, catalog)
    first = KedroPipelineModel(pipeline_ml, catalog).extract_pipeline_artifacts()["classifier"]
    later = classifier_catalog(tmp_path / "data")
    train(pipeline_ml, later)
    version = Path(first).parent.name
    pinned = DataCatalog(
        {
            **{name: later[name] for name in later if name != "classifier"},
            "classifier": PickleDataset(
                filepath=str(tmp_path / "data" / "06_models" / "classifier.pkl"), version=Version(version, None)
            ),
        }
    )
    assert KedroPipelineModel(pipeline_ml, pinned).extract_pipeline_artifacts()["classifier"] == first
    assert KedroPipelineModel(pipeline_ml, later).extract_pipeline_artifacts()["classifier"] != first


def test_versioned_artifact_never_saved_raises(pipeline_ml, tmp_path):
    model = KedroPipelineModel(pipeline_ml, classifier_catalog(tmp_path / "data"))
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'classifier' at ")) as error:
        model.extract_pipeline_artifacts()
    assert "run the training pipeline first" in str(error.value)


def test_unversioned_artifact_file_missing_raises(pipeline_ml, tmp_path):
    model = KedroPipelineModel(pipeline_ml, classifier_catalog(tmp_path / "data", versioned=False))
    expected = (tmp_path / "data" / "06_models" / "classifier.pkl").resolve()
    with pytest.raises(ArtifactNotFoundError, match=re.escape(f"Artifact 'classifier' has no file at {expected}")):
        model.extract_pipeline_artifacts()


def test_remote_artifacts_are_fetched_to_the_saving_folder(tmp_path):
    features, target = load_features()
    remote = f"memory:///akm-test-{tmp_path.name}"
    catalog = DataCatalog(
        {
            "train_features": MemoryDataset(features),
            "train_target": MemoryDataset(target),
            "scaler": PickleDataset(filepath=f"{remote}/scaler.pkl"),
            "classifier": PickleDataset(filepath=f"{remote}/classifier.pkl", version=Version(None, None)),
            "params:threshold": MemoryDataset(0.5),
        }
    )
    pipeline_ml = classifier_pipeline_ml()
    train(pipeline_ml, catalog)
    model = KedroPipelineModel(pipeline_ml, catalog)
    artifacts = model.extract_pipeline_artifacts(tmp_path / "saved")
    for name in ("scaler", "classifier"):
        local = Path(artifacts[name])
        assert local.is_file() and local.is_relative_to((tmp_path / "saved").resolve())
    pd.testing.assert_frame_equal(
        loaded(model, artifacts).predict(None, features), run_inference(pipeline_ml.inference, catalog, features)
    )


def test_remote_artifact_missing_raises(trained_catalog, tmp_path):
    catalog = trained_catalog
    catalog["classifier"] = PickleDataset(filepath=f"memory:///akm-missing-{tmp_path.name}/classifier.pkl")
    model = KedroPipelineModel(classifier_pipeline_ml(), catalog)
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'classifier' has no file at memory://")):
        model.extract_pipeline_artifacts()


def test_set_artifacts_checks_hashes_before_anything_is_logged(model, tmp_path):
    artifacts = model.extract_pipeline_artifacts()
    other = KedroPipelineModel(classifier_pipeline_ml(), classifier_catalog(tmp_path / "elsewhere"))
    hashes = {name: sha256_path(path) for name, path in artifacts.items()}
    other.set_artifacts(artifacts, hashes)
    assert other.extract_pipeline_artifacts() == artifacts

    wrong = dict(hashes, classifier="0" * 64)
    with pytest.raises(ArtifactIntegrityError, match=re.escape("Artifact 'classifier' at ")) as error:
        other.set_artifacts(artifacts, wrong)
    assert "0" * 64 in str(error.value) and hashes["classifier"] in str(error.value)


def test_set_artifacts_rejects_unknown_names_and_missing_hashes(model):
    artifacts = model.extract_pipeline_artifacts()
    with pytest.raises(KedroPipelineModelError, match=re.escape("names ['clasifier']")):
        model.set_artifacts({"clasifier": artifacts["classifier"]}, {"clasifier": "x"})
    with pytest.raises(KedroPipelineModelError, match=re.escape("got no sha256 for ['scaler']")):
        model.set_artifacts({"scaler": artifacts["scaler"]}, {})


# -- load_context ------------------------------------------------------------------------------------------------


def test_modified_artifact_fails_load_context_naming_it(model, tmp_path):
    artifacts = model.extract_pipeline_artifacts()
    Path(artifacts["scaler"]).write_bytes(Path(artifacts["scaler"]).read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError, match=re.escape(f"Artifact 'scaler' at {artifacts['scaler']} has")):
        loaded(model, artifacts)


def test_load_context_without_recorded_hashes_raises(pipeline_ml, trained_catalog, model):
    paths = model.extract_pipeline_artifacts()
    unhashed = KedroPipelineModel(pipeline_ml, trained_catalog)
    with pytest.raises(KedroPipelineModelError, match=re.escape("No sha256 was recorded for artifact(s) [")):
        unhashed.load_context(PythonModelContext(artifacts=paths, model_config={}))


def test_load_context_without_an_artifact_raises(model):
    paths = model.extract_pipeline_artifacts()
    del paths["scaler"]
    with pytest.raises(KedroPipelineModelError, match=re.escape("logged without artifact(s) ['scaler']")):
        loaded(model, paths)


def test_predict_before_load_context_raises(model):
    with pytest.raises(KedroPipelineModelError, match="not loaded"):
        model.predict(None, load_features()[0])


def test_pickled_model_is_small_and_holds_no_loaded_data(model):
    artifacts = model.extract_pipeline_artifacts()
    before = len(cloudpickle.dumps(model))
    ready = loaded(model, artifacts)
    after = len(cloudpickle.dumps(ready))
    assert after <= before + 200 and before < 20_000  # the fitted scaler and classifier alone weigh more
    assert cloudpickle.loads(cloudpickle.dumps(ready))._plan is None


def test_loading_where_the_project_code_is_missing_says_what_to_ship(tmp_path, monkeypatch, trained_catalog):
    package = tmp_path / "src" / "churn_project"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nodes.py").write_text("def echo(instances, scaler):\n    return instances\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    from churn_project.nodes import echo

    inference = Pipeline([node(echo, ["instances", "scaler"], "out", name="echo")])
    payload = cloudpickle.dumps(KedroPipelineModel(inference, trained_catalog, input_name="instances"))
    monkeypatch.delitem(sys.modules, "churn_project.nodes")
    monkeypatch.delitem(sys.modules, "churn_project")
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry != str(tmp_path / "src")])
    with pytest.raises(KedroPipelineModelError, match=re.escape("need module 'churn_project'")) as error:
        cloudpickle.loads(payload)
    assert "code_paths=project_code_paths('churn_project')" in str(error.value)


# -- predict -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 10_000])
def test_predict_equals_sequential_runner(model, pipeline_ml, trained_catalog, rows):
    instances = sample_instances(rows)
    expected = run_inference(pipeline_ml.inference, trained_catalog, instances)
    pd.testing.assert_frame_equal(loaded(model).predict(None, instances), expected)


def test_params_override_training_defaults_per_call(model, pipeline_ml, trained_catalog):
    instances = sample_instances(200)
    ready = loaded(model)
    overridden = ready.predict(None, instances, params={"threshold": 0.9})
    pd.testing.assert_frame_equal(
        overridden, run_inference(pipeline_ml.inference, trained_catalog, instances, threshold=0.9)
    )
    assert not overridden["label"].equals(ready.predict(None, instances)["label"])
    pd.testing.assert_frame_equal(
        ready.predict(None, instances), run_inference(pipeline_ml.inference, trained_catalog, instances)
    )


def test_unknown_param_raises_with_suggestion(model):
    with pytest.raises(KedroPipelineModelError, match=re.escape("Unknown parameter 'treshold'")) as error:
        loaded(model).predict(None, sample_instances(1), params={"treshold": 0.1})
    assert "Did you mean 'threshold'?" in str(error.value)


def test_numpy_input(tmp_path):
    pipeline_ml = classifier_pipeline_ml(numpy_input=True)
    catalog = classifier_catalog(tmp_path, numpy_input=True)
    train(pipeline_ml, catalog)
    instances = sample_instances(50).to_numpy()
    model = loaded(KedroPipelineModel(pipeline_ml, catalog))
    pd.testing.assert_frame_equal(
        model.predict(None, instances), run_inference(pipeline_ml.inference, catalog, instances)
    )


def test_input_objects_are_passed_through_unconverted(trained_catalog):
    """Spark DataFrames (or anything else) reach the nodes as the very object given: no conversion, no copy."""
    inference = Pipeline([node(keep_first, ["instances", "scaler"], "out", name="keep")])
    model = loaded(KedroPipelineModel(inference, trained_catalog, input_name="instances"))
    sentinel = object()
    assert model.predict(None, sentinel) is sentinel


def keep_first(first, _second):
    return first


def test_explicit_runner_is_used_as_given(model, pipeline_ml, trained_catalog):
    class CountingRunner(SequentialRunner):
        runs = 0

        def run(self, *args, **kwargs):
            CountingRunner.runs += 1
            return super().run(*args, **kwargs)

    instances = sample_instances(30)
    expected = run_inference(pipeline_ml.inference, trained_catalog, instances)
    for runner in (CountingRunner(), ThreadRunner()):
        with_runner = loaded(KedroPipelineModel(pipeline_ml, trained_catalog, runner=runner))
        pd.testing.assert_frame_equal(with_runner.predict(None, instances), expected)
        pd.testing.assert_frame_equal(
            with_runner.predict(None, instances, params={"threshold": 0.2}),
            run_inference(pipeline_ml.inference, trained_catalog, instances, threshold=0.2),
        )
    assert CountingRunner.runs == 2


@pytest.mark.parametrize(
    ("runner", "message"),
    [("SequentialRunner", "runner must be a Kedro runner instance"), (ParallelRunner(), "ParallelRunner() would")],
)
def test_unsuitable_runner_raises(pipeline_ml, trained_catalog, runner, message):
    with pytest.raises(KedroPipelineModelError, match=re.escape(message)):
        KedroPipelineModel(pipeline_ml, trained_catalog, runner=runner)


# -- copy modes: same data flow as MemoryDatasets with the same copy_mode under SequentialRunner --------------------


def passthrough(frame: pd.DataFrame, _lookup: dict) -> pd.DataFrame:
    return frame


def increment_in_place(frame: pd.DataFrame) -> np.ndarray:
    frame["value"] += 1
    return frame["value"].to_numpy().cumsum()


def combine(frame: pd.DataFrame, total: np.ndarray) -> pd.DataFrame:
    return frame.assign(total=total)


def mutating_pipeline() -> Pipeline:
    """``combine`` sees ``frame`` mutated by ``increment_in_place`` only when 'frame' is not copied on read."""
    return Pipeline(
        [
            node(passthrough, ["instances", "lookup"], "frame", name="passthrough"),
            node(increment_in_place, "frame", "total", name="increment_in_place"),
            node(combine, ["frame", "total"], "result", name="combine"),
        ]
    )


def runner_result(copy_modes: dict, instances: pd.DataFrame, lookup: dict) -> pd.DataFrame:
    datasets = {name: MemoryDataset(copy_mode=mode) for name, mode in copy_modes.items()}
    datasets["instances"].save(instances)
    datasets["lookup"].save(lookup)
    catalog = DataCatalog(datasets)
    SequentialRunner().run(mutating_pipeline(), catalog)
    return catalog.load("result")


@pytest.mark.parametrize(
    "copy_mode",
    ["assign", "copy", "deepcopy", None, {"frame": "copy"}, {"instances": "deepcopy", "frame": "assign"}],
)
def test_copy_modes_match_memory_datasets_under_sequential_runner(tmp_path, copy_mode):
    lookup_path = tmp_path / "lookup.pkl"
    PickleDataset(filepath=str(lookup_path)).save({"a": 1})
    catalog = DataCatalog({"lookup": PickleDataset(filepath=str(lookup_path))})
    model = KedroPipelineModel(mutating_pipeline(), catalog, input_name="instances", copy_mode=copy_mode)
    datasets = sorted(mutating_pipeline().datasets())
    modes = (
        dict.fromkeys(datasets, copy_mode)
        if not isinstance(copy_mode, dict)
        else {**dict.fromkeys(datasets), **copy_mode}
    )
    ours_input = pd.DataFrame({"value": [1, 2, 3]})
    theirs_input = ours_input.copy()
    ours = loaded(model).predict(None, ours_input)
    theirs = runner_result(modes, theirs_input, {"a": 1})
    pd.testing.assert_frame_equal(ours, theirs)
    pd.testing.assert_frame_equal(ours_input, theirs_input)  # the caller's data is mutated (or not) alike


def test_assign_mode_passes_the_same_object_and_copy_mode_protects_the_callers_data(tmp_path):
    lookup_path = tmp_path / "lookup.pkl"
    PickleDataset(filepath=str(lookup_path)).save({"a": 1})
    catalog = DataCatalog({"lookup": PickleDataset(filepath=str(lookup_path))})
    assigned = loaded(KedroPipelineModel(mutating_pipeline(), catalog, input_name="instances"))
    frame = pd.DataFrame({"value": [1, 2, 3]})
    assigned.predict(None, frame)
    assert frame["value"].tolist() == [2, 3, 4]
    copied = loaded(KedroPipelineModel(mutating_pipeline(), catalog, input_name="instances", copy_mode="copy"))
    frame = pd.DataFrame({"value": [1, 2, 3]})
    copied.predict(None, frame)
    assert frame["value"].tolist() == [1, 2, 3]


# -- node shapes: dict inputs/outputs, several outputs, generators -------------------------------------------------


def split(frame: pd.DataFrame, factor: float) -> dict:
    return {"low": frame * factor, "high": frame / factor}


def join(left: pd.DataFrame, right: pd.DataFrame) -> tuple:
    return left + right, left - right


def total(first: pd.DataFrame, second: pd.DataFrame, *, weight: int) -> pd.DataFrame:
    return first * weight + second


def stack(first: pd.DataFrame, second: pd.DataFrame, third: pd.DataFrame) -> pd.DataFrame:
    return first + second + third


def chunks(frame: pd.DataFrame):
    yield frame.head(1)
    yield frame.tail(1)


def test_dict_and_list_bindings_match_sequential_runner():
    inference = Pipeline(
        [
            node(split, ["instances", "params:factor"], {"low": "low", "high": "high"}, name="split"),
            node(join, {"left": "low", "right": "high"}, ["plus", "minus"], name="join"),
            node(total, {"first": "plus", "second": "minus", "weight": "params:weight"}, "combined", name="total"),
            node(stack, ["combined", "low", "instances"], "result", name="stack"),
        ]
    )
    catalog = DataCatalog({"params:factor": MemoryDataset(2.0), "params:weight": MemoryDataset(3)})
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    model = loaded(KedroPipelineModel(inference, catalog, input_name="instances"))
    expected_catalog = DataCatalog({**{k: catalog[k] for k in catalog}, "instances": MemoryDataset(frame)})
    SequentialRunner().run(inference, expected_catalog)
    pd.testing.assert_frame_equal(model.predict(None, frame), expected_catalog.load("result"))
    low, high = frame * 2.0, frame / 2.0
    pd.testing.assert_frame_equal(
        model.predict(None, frame, params={"weight": 5}), ((low + high) * 5 + (low - high)) + low + frame
    )


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (["left", "right"], "must return 2 values for outputs ['left', 'right'], got ndarray"),
        ({"a": "left", "b": "right"}, "must return a dict with keys ['a', 'b'], got ndarray"),
    ],
)
def test_node_returning_the_wrong_shape_raises_naming_it(outputs, message):
    inference = Pipeline(
        [
            node(keep_first, ["instances", "params:unused"], outputs, name="bad_split"),
            node(keep_first, ["left", "right"], "out", name="use"),
        ]
    )
    catalog = DataCatalog({"params:unused": MemoryDataset(0)})
    model = loaded(KedroPipelineModel(inference, catalog, input_name="instances"))
    with pytest.raises(KedroPipelineModelError, match=re.escape("Node bad_split: keep_first(")) as error:
        model.predict(None, np.arange(3))
    assert message in str(error.value)


def test_generator_nodes_run_through_sequential_runner():
    inference = Pipeline([node(chunks, "instances", "rows", name="chunks")])
    frame = pd.DataFrame({"a": [1, 2, 3]})
    model = loaded(KedroPipelineModel(inference, DataCatalog(), input_name="instances"), artifacts={})
    expected = DataCatalog({"instances": MemoryDataset(frame)})
    SequentialRunner().run(inference, expected)
    pd.testing.assert_frame_equal(model.predict(None, frame), expected.load("rows"))
