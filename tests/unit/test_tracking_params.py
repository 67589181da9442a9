"""Kedro params as MLflow params in both shapes: today's flattening, and kedro-mlflow's (one param per input)."""

from __future__ import annotations

import pytest

from airflow_kedro_mlflow.exceptions import KedroProjectError
from airflow_kedro_mlflow.tracking.params import ParamsOptions, shape_params

PARAMETERS = {
    "xgb_hyperparameters": {"eta": 0.1, "max_depth": 3},
    "threshold": 0.5,
    "data_dir": "/data",
    "blob": "x" * 7000,
}
INPUTS = ["instances", "params:xgb_hyperparameters", "params:xgb_hyperparameters.eta", "params:threshold",
          "params:blob"]  # fmt: skip


def test_flatten_shape_logs_every_parameter_flattened():
    params, tags = shape_params(PARAMETERS, ParamsOptions(), INPUTS)
    assert set(params) == {"xgb_hyperparameters.eta", "xgb_hyperparameters.max_depth", "threshold", "data_dir", "blob"}
    assert params["blob"].endswith("...") and len(params["blob"]) == 6000 and tags == {}


def test_kedro_mlflow_shape_logs_what_nodes_read_with_a_nested_dict_as_one_param():
    params, _ = shape_params(PARAMETERS, ParamsOptions(shape="kedro_mlflow"), INPUTS)
    # kedro-mlflow's before_node_run: str(value) of each params: input, named without the prefix; data_dir is read
    # by the catalog only, so it is not logged.
    assert params["xgb_hyperparameters"] == str({"eta": 0.1, "max_depth": 3})
    assert params["xgb_hyperparameters.eta"] == "0.1" and params["threshold"] == "0.5"
    assert set(params) == {"xgb_hyperparameters", "xgb_hyperparameters.eta", "threshold", "blob"}
    assert params["blob"] == "x" * 6000  # kedro-mlflow's truncate: a plain cut


def test_kedro_mlflow_shape_logs_parameters_when_a_node_reads_them_all():
    params, _ = shape_params({"a": {"b": 1}}, ParamsOptions(shape="kedro_mlflow"), ["parameters"])
    assert params == {"parameters": "{'a': {'b': 1}}"}


def test_long_params_strategies_fail_naming_the_param_or_log_a_tag():
    with pytest.raises(KedroProjectError, match=r"Kedro param 'blob' is 7000 characters long.*'tag'.*'truncate'"):
        shape_params(PARAMETERS, ParamsOptions(shape="kedro_mlflow", long_params_strategy="fail"), INPUTS)
    params, tags = shape_params(PARAMETERS, ParamsOptions(long_params_strategy="tag"), INPUTS)
    assert "blob" not in params and tags == {"blob": "x" * 7000}


def test_argument_wins_over_the_project_setting_and_bad_options_name_the_fix():
    resolved = ParamsOptions.resolve({"long_params_strategy": "tag"}, {"shape": "kedro_mlflow"})
    assert resolved == ParamsOptions(shape="kedro_mlflow", long_params_strategy="tag")
    with pytest.raises(KedroProjectError, match=r"shape='nested' is not one of 'flatten', 'kedro_mlflow'"):
        ParamsOptions.resolve({"shape": "nested"})
    with pytest.raises(KedroProjectError, match=r"unknown key\(s\) \['flatten'\]"):
        ParamsOptions.resolve(None, {"flatten": True})
