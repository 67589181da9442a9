"""Signatures: inputs from the training data, params from the inference pipeline's scalar ``params:`` inputs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from airflow_kedro_mlflow.exceptions import ArtifactNotFoundError, KedroPipelineModelError
from airflow_kedro_mlflow.model import infer_model_signature


def score(instances, threshold, labels, options, weights, parameters):
    return instances


def inference() -> Pipeline:
    inputs = ["instances", "params:model.threshold", "params:labels", "params:options", "params:weights", "parameters"]
    return Pipeline([node(score, inputs, "scores", name="score")])


def catalog(**overrides) -> DataCatalog:
    values = {
        "params:model.threshold": np.float64(0.7),
        "params:labels": ["benign", "malignant"],
        "params:options": {"depth": 2},
        "params:weights": [],
        "parameters": {"model": {"threshold": 0.7}},
        **overrides,
    }
    return DataCatalog({name: MemoryDataset(value) for name, value in values.items()})


def test_inputs_from_the_data_and_scalar_params_without_prefix():
    data = pd.DataFrame({"radius": [1.5, 2.0], "count": [1, 2], "name": ["a", "b"]})
    signature = infer_model_signature(data, inference(), catalog())
    assert [(spec.name, spec.type.name) for spec in signature.inputs.inputs] == [
        ("radius", "double"),
        ("count", "long"),
        ("name", "string"),
    ]
    params = {param.name: param for param in signature.params.params}
    # dicts, empty lists and `parameters` stay artifacts; `runner` picks the Kedro runner at predict time
    assert sorted(params) == ["labels", "model.threshold", "runner"]
    assert (params["model.threshold"].dtype.name, params["model.threshold"].default) == ("double", 0.7)
    assert params["labels"].shape == (-1,) and params["labels"].default == ["benign", "malignant"]


def test_numpy_input_gives_a_tensor_schema():
    signature = infer_model_signature(np.zeros((3, 4), dtype="float32"), inference(), catalog())
    (tensor,) = signature.inputs.inputs
    assert tensor.shape == (-1, 4) and tensor.type == np.dtype("float32")


def test_no_params_gives_only_the_runner_param_defaulting_to_the_models_runner():
    only_data = Pipeline([node(lambda x: x, "instances", "out", name="echo")])
    signature = infer_model_signature(pd.DataFrame({"a": [1]}), only_data, DataCatalog(), runner="ThreadRunner")
    assert signature.params.to_dict() == [
        {"name": "runner", "type": "string", "default": "ThreadRunner", "shape": None}
    ]


def test_recorded_signature_gets_the_models_runner_as_default_and_keeps_the_rest():
    from airflow_kedro_mlflow.model.signature import with_runner_default

    recorded = infer_model_signature(pd.DataFrame({"a": [1.0]}), inference(), catalog())
    changed = with_runner_default(recorded, "ThreadRunner")
    defaults = {spec.name: spec.default for spec in changed.params.params}
    assert defaults == {"labels": ["benign", "malignant"], "model.threshold": 0.7, "runner": "ThreadRunner"}
    assert changed.inputs == recorded.inputs


def test_a_pipeline_param_named_runner_is_kept_and_warned_about(caplog):
    pipeline = Pipeline([node(lambda x, r: x, ["instances", "params:runner"], "out", name="echo")])
    values = DataCatalog({"params:runner": MemoryDataset("fast")})
    signature = infer_model_signature(pd.DataFrame({"a": [1]}), pipeline, values)
    assert [(spec.name, spec.default) for spec in signature.params.params] == [("runner", "fast")]
    assert "runner cannot be chosen at predict time" in caplog.text


def test_missing_parameter_raises_naming_it():
    incomplete = DataCatalog({"params:labels": MemoryDataset(["a"])})
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Parameter 'params:model.threshold'")):
        infer_model_signature(pd.DataFrame({"a": [1]}), inference(), incomplete)


def test_input_mlflow_cannot_describe_raises_readably():
    with pytest.raises(
        KedroPipelineModelError, match=re.escape("cannot infer a signature from the input data (NoneType)")
    ):
        infer_model_signature(None, inference(), catalog())
