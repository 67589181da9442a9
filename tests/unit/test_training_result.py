"""TrainingResult: the training XCom round-trips as JSON, and a missing or malformed key is named."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from airflow_kedro_mlflow.exceptions import TrainingXComError
from airflow_kedro_mlflow.training_result import ArtifactRecord, TrainingResult

SHA = "a" * 64


def _result(**overrides: Any) -> TrainingResult:
    values: dict[str, Any] = {
        "run_id": "0123abcd",
        "experiment_id": "7",
        "tracking_uri": "http://127.0.0.1:5000",
        "project_path": "/projects/kedro_classifier",
        "env": "local",
        "conf_source": None,
        "runtime_params": {"C": 0.5, "data_dir": "/scratch/try1"},
        "pipeline_name": "training",
        "input_name": "instances",
        "artifacts": {
            "classifier": ArtifactRecord(
                path="/data/06_models/classifier.pkl/v1/classifier.pkl",
                uri="runs:/0123abcd/kedro_artifacts/classifier/classifier.pkl",
                sha256=SHA,
            )
        },
        "signature": {"inputs": "[]", "outputs": None, "params": None},
        "run_url": "http://127.0.0.1:5000/#/experiments/7/runs/0123abcd",
    }
    values.update(overrides)
    return TrainingResult(**values)


def test_to_xcom_round_trips_through_json() -> None:
    result = _result()

    payload = json.loads(json.dumps(result.to_xcom()))

    assert TrainingResult.from_xcom(payload) == result
    assert payload["artifacts"]["classifier"] == {
        "path": "/data/06_models/classifier.pkl/v1/classifier.pkl",
        "uri": "runs:/0123abcd/kedro_artifacts/classifier/classifier.pkl",
        "sha256": SHA,
    }


def test_from_xcom_accepts_json_text() -> None:
    result = _result()

    assert TrainingResult.from_xcom(json.dumps(result.to_xcom())) == result


def test_to_xcom_never_carries_credentials_in_the_tracking_uri() -> None:
    payload = _result(tracking_uri="http://admin:s3cret@mlflow.internal:5000").to_xcom()

    assert payload["tracking_uri"] == "http://mlflow.internal:5000"
    assert "s3cret" not in json.dumps(payload)


def test_to_xcom_names_a_value_json_cannot_carry() -> None:
    with pytest.raises(TrainingXComError, match=re.escape("'runtime_params'")):
        _result(runtime_params={"when": object()}).to_xcom()


def test_optional_keys_may_be_absent_or_null() -> None:
    payload = _result().to_xcom()
    del payload["signature"], payload["run_url"]
    payload["env"] = None
    payload["runtime_params"] = None

    result = TrainingResult.from_xcom(payload)

    assert result.signature is None
    assert result.run_url is None
    assert result.env is None
    assert result.runtime_params == {}


@pytest.mark.parametrize("missing", ["run_id", "artifacts", "project_path", "tracking_uri"])
def test_missing_key_is_named_with_a_hint(missing: str) -> None:
    payload = _result().to_xcom()
    del payload[missing]

    with pytest.raises(TrainingXComError, match=re.escape(f"['{missing}']")) as info:
        TrainingResult.from_xcom(payload)
    assert "did the training task run?" in str(info.value).lower()


@pytest.mark.parametrize("payload", [None, "not json", ["run_id"], 42])
def test_payload_that_is_not_a_dict_is_refused(payload: Any) -> None:
    with pytest.raises(TrainingXComError, match="training task run"):
        TrainingResult.from_xcom(payload)


@pytest.mark.parametrize(
    ("key", "value"),
    [("run_id", ""), ("run_id", 12), ("experiment_id", None), ("artifacts", []), ("runtime_params", "C=1")],
)
def test_malformed_key_is_named(key: str, value: Any) -> None:
    payload = _result().to_xcom()
    payload[key] = value

    with pytest.raises(TrainingXComError, match=re.escape(f"{key!r}")):
        TrainingResult.from_xcom(payload)


def test_artifact_record_missing_a_field_is_named() -> None:
    payload = _result().to_xcom()
    del payload["artifacts"]["classifier"]["sha256"]

    with pytest.raises(TrainingXComError, match=re.escape("artifacts['classifier'] is missing ['sha256']")):
        TrainingResult.from_xcom(payload)


def test_artifact_sha256_must_be_a_hex_digest() -> None:
    payload = _result().to_xcom()
    payload["artifacts"]["classifier"]["sha256"] = "not-a-hash"

    with pytest.raises(TrainingXComError, match=re.escape("artifacts['classifier'].sha256")):
        TrainingResult.from_xcom(payload)


def test_artifact_record_that_is_not_a_dict_is_named() -> None:
    payload = _result().to_xcom()
    payload["artifacts"]["classifier"] = "/data/classifier.pkl"

    with pytest.raises(TrainingXComError, match=re.escape("artifacts['classifier']")):
        TrainingResult.from_xcom(payload)
