"""kedro-mlflow's metric datasets with our types: same catalog syntax, same metrics in the run (real sqlite store).

The expected steps and values are those kedro-mlflow 2.0.3 logs for the same catalog and saves (compared side by
side on a scratch install of it when these datasets were written).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import mlflow
import numpy as np
import pytest
from kedro.io import DataCatalog, DatasetError

from airflow_kedro_mlflow.datasets import MlflowMetricDataset, MlflowMetricHistoryDataset, MlflowMetricsHistoryDataset

PACKAGE = "airflow_kedro_mlflow.datasets"


@pytest.fixture
def run(tracking_uri: str) -> Iterator[mlflow.ActiveRun]:
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as active:
        yield active


def catalog(**entries: dict) -> DataCatalog:
    return DataCatalog.from_config(
        {name: {**entry, "type": f"{PACKAGE}.{entry['type']}"} for name, entry in entries.items()}
    )


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return [(metric.step, metric.value) for metric in mlflow.MlflowClient().get_metric_history(run_id, key)]


def test_metric_without_key_is_named_after_its_catalog_entry(run):
    data = catalog(accuracy={"type": "MlflowMetricDataset"})

    data.save("accuracy", 0.9)

    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {"accuracy": 0.9}
    assert data.load("accuracy") == 0.9
    assert data.exists("accuracy")


def test_metric_modes_and_steps_log_what_kedro_mlflow_logs(run):
    data = catalog(
        overwritten={"type": "MlflowMetricDataset"},
        appended={"type": "MlflowMetricDataset", "save_args": {"mode": "append"}},
        at_step={"type": "MlflowMetricDataset", "key": "f1", "save_args": {"step": 5}, "load_args": {"step": 5}},
    )
    for value in (0.1, 0.2, 0.3):
        data.save("overwritten", value)
        data.save("appended", value)
    data.save("at_step", np.float32(0.5))

    assert history(run.info.run_id, "overwritten") == [(0, 0.1), (0, 0.2), (0, 0.3)]
    assert history(run.info.run_id, "appended") == [(0, 0.1), (1, 0.2), (2, 0.3)]
    assert history(run.info.run_id, "f1") == [(5, 0.5)]
    assert (data.load("overwritten"), data.load("appended"), data.load("at_step")) == (0.3, 0.3, 0.5)


def test_metric_given_with_its_step_is_logged_at_that_step(run):
    data = catalog(loss={"type": "MlflowMetricDataset"})

    data.save("loss", {"value": 2.5, "step": 7})

    assert history(run.info.run_id, "loss") == [(7, 2.5)]


def test_metric_history_list_mode_logs_steps_zero_to_n(run):
    data = catalog(val_loss={"type": "MlflowMetricHistoryDataset", "save_args": {"mode": "list"}})

    data.save("val_loss", [0.9, 0.5, 0.25])

    assert history(run.info.run_id, "val_loss") == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert data.load("val_loss") == [0.9, 0.5, 0.25]


def test_metric_history_dict_and_history_modes(run):
    data = catalog(
        by_step={"type": "MlflowMetricHistoryDataset", "save_args": {"mode": "dict"}, "load_args": {"mode": "dict"}},
        logged={
            "type": "MlflowMetricHistoryDataset",
            "save_args": {"mode": "history"},
            "load_args": {"mode": "history"},
        },
    )
    data.save("by_step", {0: 3.0, 2: 1.0})
    data.save("logged", [{"step": 1, "value": 5.0, "timestamp": 1000}, {"step": 3, "value": 4.0}])

    assert data.load("by_step") == {0: 3.0, 2: 1.0}
    loaded = data.load("logged")
    assert [(entry["step"], entry["value"]) for entry in loaded] == [(1, 5.0), (3, 4.0)]
    assert loaded[0]["timestamp"] == 1000


def test_metrics_history_prefix_defaults_to_the_catalog_name(run):
    data = catalog(scores={"type": "MlflowMetricsHistoryDataset"})

    data.save(
        "scores", {"auc": {"value": 0.8, "step": 0}, "f1": [{"value": 0.5, "step": 0}, {"value": 0.6, "step": 1}]}
    )

    assert history(run.info.run_id, "scores.f1") == [(0, 0.5), (1, 0.6)]
    assert data.load("scores") == {
        "scores.auc": {"step": 0, "value": 0.8},
        "scores.f1": [{"step": 0, "value": 0.5}, {"step": 1, "value": 0.6}],
    }


def test_run_id_reads_and_writes_that_run_without_an_active_one(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as earlier:
        pass
    data = catalog(accuracy={"type": "MlflowMetricDataset", "run_id": earlier.info.run_id})

    data.save("accuracy", 0.75)

    assert mlflow.active_run() is None
    assert data.load("accuracy") == 0.75
    assert history(earlier.info.run_id, "accuracy") == [(0, 0.75)]


def test_no_active_run_is_an_error_naming_the_dataset_and_the_fix(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    data = catalog(accuracy={"type": "MlflowMetricDataset"}, scores={"type": "MlflowMetricsHistoryDataset"})

    with pytest.raises(DatasetError, match=r"MlflowMetricDataset 'accuracy' has no MLflow run.*mlflow.start_run"):
        data.save("accuracy", 0.5)
    with pytest.raises(DatasetError, match=r"MlflowMetricsHistoryDataset 'scores' has no MLflow run.*run_id"):
        data.save("scores", {"a": {"value": 1.0, "step": 0}})
    assert not data.exists("accuracy")
    assert mlflow.MlflowClient().search_runs(["0"]) == []  # MLflow did not start a stray run


def test_explicit_run_id_without_tracking_uri_refuses_the_implicit_store():
    dataset = MlflowMetricDataset(key="accuracy", run_id="abc")

    with pytest.raises(DatasetError, match=r"run_id='abc' but no MLflow tracking server.*MLFLOW_TRACKING_URI"):
        dataset.save(0.5)


def test_metric_outside_a_catalog_needs_a_key(run):
    with pytest.raises(DatasetError, match="MlflowMetricDataset has no key: set key in its catalog entry"):
        MlflowMetricDataset().save(0.5)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MlflowMetricDataset, {"save_args": {"synchronous": False}}, "save_args ['synchronous'] not supported"),
        (MlflowMetricDataset, {"save_args": {"mode": "replace"}}, "save_args mode='replace' is not one of"),
        (MlflowMetricDataset, {"mode": "append"}, "mode='append' is not supported. Put mode in save_args"),
        (MlflowMetricDataset, {"kye": "a"}, "unknown argument(s) ['kye']. Did you mean 'key'?"),
        (MlflowMetricHistoryDataset, {"load_args": {"mode": "table"}}, "load_args mode='table' is not one of"),
        (MlflowMetricHistoryDataset, {"save_args": {"step": 1}}, "save_args ['step'] not supported"),
        (MlflowMetricsHistoryDataset, {"key": "a"}, "unknown argument(s) ['key']. Valid arguments"),
    ],
)
def test_unsupported_arguments_fail_when_the_catalog_is_built(cls, kwargs, message):
    with pytest.raises(DatasetError, match=re.escape(message)):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("entry", "value", "message"),
    [
        ({"type": "MlflowMetricDataset"}, "0.5", "a metric value must be a number, got str"),
        ({"type": "MlflowMetricDataset"}, {"val": 1}, "needs 'value' (and 'step')"),
        ({"type": "MlflowMetricHistoryDataset"}, {0: 1.0}, "(mode list) saves [v0, v1, …], got dict"),
        ({"type": "MlflowMetricHistoryDataset", "save_args": {"mode": "history"}}, [{"value": 1.0}], "has no 'step'"),
        ({"type": "MlflowMetricsHistoryDataset"}, {"a": 1.0}, "metric 'a' must be {'value': v, 'step': s}"),
        ({"type": "MlflowMetricHistoryDataset", "save_args": {"mode": "history"}}, [1.0], "got an item 1.0"),
    ],
)
def test_wrong_data_is_refused_before_anything_is_logged(run, entry, value, message):
    data = catalog(metric=entry)

    with pytest.raises(DatasetError, match=re.escape(message)):
        data.save("metric", value)
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {}
