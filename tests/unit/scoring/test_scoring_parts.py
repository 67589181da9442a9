"""The parts of batch scoring that need no model: pinning to asset events, chunked reading, the output policy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_kedro_mlflow.exceptions import ModelUriError, ScoringInputError, ScoringOutputError
from airflow_kedro_mlflow.scoring import PARQUET_METADATA_KEY, PathLocation, pin_to_event, read_record, sidecar_path
from airflow_kedro_mlflow.scoring.model_uri import resolve_model_uri
from airflow_kedro_mlflow.scoring.output import atomic_output, check_output
from airflow_kedro_mlflow.scoring.pandas_engine import check_columns, with_predictions
from airflow_kedro_mlflow.scoring.sources import read_chunks

IDENTITY = {
    "airflow.dag_id": "scoring",
    "airflow.dag_run_id": "manual__1",
    "airflow.task_id": "score",
    "airflow.map_index": "-1",
    "airflow.try_number": "1",
}


def event(version: str, *, name: str = "clf", alias: str = "champion", tracking_uri: str = "http://mlflow:5000"):
    return {
        "registered_model_name": name,
        "alias": alias,
        "version": version,
        "model_uri": f"models:/{name}/{version}",
        "run_id": "r",
        "tracking_uri": tracking_uri,
    }


# -- pinning an alias to the triggering asset event ------------------------------------------------------------------


def test_alias_is_pinned_to_the_last_matching_event():
    extras = [event("3"), event("9", name="other"), event("4"), event("5", alias="challenger")]
    assert pin_to_event("models:/clf@champion", extras, "http://mlflow:5000") == "models:/clf/4"


@pytest.mark.parametrize(
    "model_uri", ["models:/clf/2", "models:/clf@challenger", "runs:/abc/model", "models:/other@champion"]
)
def test_uri_without_a_matching_event_is_kept(model_uri):
    assert pin_to_event(model_uri, [event("3")], "http://mlflow:5000") == model_uri


def test_event_of_another_tracking_server_is_ignored():
    extras = [event("3", tracking_uri="http://elsewhere:5000")]
    assert pin_to_event("models:/clf@champion", extras, "http://mlflow:5000") == "models:/clf@champion"
    assert pin_to_event("models:/clf@champion", extras, "HTTP://ELSEWHERE:5000/") == "models:/clf/3"


@pytest.mark.parametrize(
    ("model_uri", "message"),
    [
        ("", "model_uri is empty"),
        ("s3://bucket/model", "'s3://bucket/model' is not a model URI batch scoring can resolve"),
        ("models:/clf/Production", "stages are deprecated in MLflow 3"),
    ],
)
def test_malformed_model_uri_is_refused_before_any_request(model_uri, message):
    with pytest.raises(ModelUriError, match=re.escape(message)):
        resolve_model_uri(model_uri, client=None)  # type: ignore[arg-type]


# -- reading in chunks -------------------------------------------------------------------------------------------------


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(rows), "y": [float(i) / 2 for i in range(rows)]})


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_path_input_is_read_in_chunks_of_at_most_chunk_size(tmp_path, suffix):
    path = tmp_path / f"in.{suffix}"
    data = frame(25)
    {
        "parquet": lambda: data.to_parquet(path, row_group_size=7),
        "csv": lambda: data.to_csv(path, index=False),
        "jsonl": lambda: data.to_json(path, orient="records", lines=True),
    }[suffix]()

    with read_chunks(PathLocation(str(path)), chunk_size=10) as chunks:
        sizes = [len(chunk) for chunk in chunks]
        # parquet batches never span row groups: 7 + 3, 4 + ...
    assert sum(sizes) == 25 and max(sizes) <= 10 and len(sizes) >= 3


def test_parquet_directory_is_read_file_by_file_skipping_hidden_files(tmp_path):
    folder = tmp_path / "in.parquet"
    folder.mkdir()
    frame(5).to_parquet(folder / "part-0.parquet")
    frame(3).to_parquet(folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-0.parquet.crc").write_text("crc")

    with read_chunks(PathLocation(str(folder)), chunk_size=100) as chunks:
        assert [len(chunk) for chunk in chunks] == [5, 3]


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (lambda tmp: PathLocation(str(tmp / "in.txt")), "cannot tell the format of"),
        (lambda tmp: PathLocation(str(tmp / "in.csv"), format="xlsx"), "format 'xlsx' of"),
        (lambda tmp: PathLocation(""), "path must be a non-empty string"),
    ],
)
def test_unknown_format_is_refused(tmp_path, location, message):
    with pytest.raises(ScoringInputError, match=re.escape(message)):
        location(tmp_path)


def test_missing_input_is_named(tmp_path):
    missing = re.escape(f"input {tmp_path / 'none.csv'} does not exist")
    with pytest.raises(ScoringInputError, match=missing), read_chunks(PathLocation(str(tmp_path / "none.csv")), 10):
        pass


# -- the output: atomic, recorded, owned by one task -------------------------------------------------------------------


def write(location: PathLocation, identity: dict[str, str], rows: int = 4) -> None:
    with atomic_output(location, {"model_uri": "models:/clf/1", "task_identity": identity}) as writer:
        writer.write(frame(rows))


def test_output_is_written_whole_with_its_record(tmp_path):
    location = PathLocation(str(tmp_path / "out" / "scores.parquet"))
    write(location, IDENTITY, rows=4)

    assert pd.read_parquet(location.path).equals(frame(4))
    record = read_record(location)
    assert record == {"model_uri": "models:/clf/1", "task_identity": IDENTITY, "rows": 4}
    metadata = pq.read_metadata(location.path).metadata
    assert json.loads(metadata[PARQUET_METADATA_KEY.encode()]) == record
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".scores.parquet.scoring.json", "scores.parquet"]
    assert sidecar_path(location.path).endswith("/.scores.parquet.scoring.json")


def test_failed_write_leaves_the_previous_output_and_no_temporary_file(tmp_path):
    location = PathLocation(str(tmp_path / "scores.csv"))
    write(location, IDENTITY, rows=2)
    before = Path(location.path).read_text()

    with pytest.raises(RuntimeError, match="killed"), atomic_output(location, {"task_identity": IDENTITY}) as writer:
        writer.write(frame(3))
        raise RuntimeError("killed halfway")

    assert Path(location.path).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scores.csv.scoring.json", "scores.csv"]


def test_csv_and_jsonl_chunks_are_appended(tmp_path):
    for suffix in ("csv", "jsonl"):
        location = PathLocation(str(tmp_path / f"scores.{suffix}"))
        with atomic_output(location, {}) as writer:
            writer.write(frame(2))
            writer.write(frame(3))
        read = pd.read_csv if suffix == "csv" else lambda p: pd.read_json(p, lines=True)
        assert len(read(location.path)) == 5, suffix


def test_retry_of_the_same_task_may_overwrite(tmp_path):
    location = PathLocation(str(tmp_path / "scores.parquet"))
    write(location, IDENTITY)
    check_output(location, {**IDENTITY, "airflow.try_number": "2"}, overwrite=False)


def test_output_of_an_older_run_is_refused_unless_overwrite(tmp_path):
    location = PathLocation(str(tmp_path / "scores.parquet"))
    write(location, IDENTITY)
    newer = {**IDENTITY, "airflow.dag_run_id": "manual__2"}

    with pytest.raises(ScoringOutputError) as raised:
        check_output(location, newer, overwrite=False)
    message = str(raised.value)
    assert f"output {location.path} already exists and it was written by" in message
    assert "airflow.dag_run_id='manual__1'" in message and "airflow.dag_run_id='manual__2'" in message
    assert "pass overwrite=True" in message
    check_output(location, newer, overwrite=True)


def test_output_without_record_or_caller_without_identity_is_refused(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    frame(2).to_parquet(foreign)
    with pytest.raises(ScoringOutputError, match=re.escape("it has no scoring record")):
        check_output(PathLocation(str(foreign)), IDENTITY, overwrite=False)

    ours = PathLocation(str(tmp_path / "ours.parquet"))
    write(ours, IDENTITY)
    with pytest.raises(ScoringOutputError, match=re.escape("this call has no task identity")):
        check_output(ours, None, overwrite=False)


def test_chunk_that_does_not_fit_the_first_schema_is_named(tmp_path):
    location = PathLocation(str(tmp_path / "scores.parquet"))
    mismatch = re.escape("rows 2..3 do not fit the parquet schema")
    with pytest.raises(ScoringOutputError, match=mismatch), atomic_output(location, {}) as writer:
        writer.write(pd.DataFrame({"x": [1, 2]}))
        writer.write(pd.DataFrame({"x": ["a", "b"]}))
    assert list(tmp_path.iterdir()) == []


# -- predictions next to the input -------------------------------------------------------------------------------------


def test_predictions_of_any_shape_follow_the_input_columns():
    import numpy as np

    chunk = frame(3).set_axis([10, 11, 12])  # a CSV chunk's index does not start at 0
    assert list(with_predictions(chunk, pd.DataFrame({"p": [1, 2, 3]})).columns) == ["x", "y", "p"]
    assert list(with_predictions(chunk, pd.Series([1, 2, 3])).columns) == ["x", "y", "prediction"]
    assert list(with_predictions(chunk, np.ones((3, 2))).columns) == ["x", "y", "prediction_0", "prediction_1"]
    assert with_predictions(chunk, [7, 8, 9])["prediction"].tolist() == [7, 8, 9]


def test_prediction_clashing_with_an_input_column_is_refused():
    with pytest.raises(ScoringOutputError, match=re.escape("prediction column(s) ['x'] have the names of input")):
        with_predictions(frame(2), pd.DataFrame({"x": [0, 1]}))


def test_missing_columns_are_named_with_the_model():
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    metadata = Model(signature=ModelSignature(inputs=Schema([ColSpec("double", n) for n in ("a", "b", "c")])))
    with pytest.raises(ScoringInputError) as raised:
        check_columns(metadata, ["b", "z"], model_uri="models:/clf/3", source="in.csv")
    assert str(raised.value).startswith(
        "input in.csv lacks column(s) ['a', 'c'] that the signature of model models:/clf/3 requires; "
        "the input has ['b', 'z']."
    )


def test_parquet_output_writes_floats_plain_and_keeps_dictionaries_for_other_columns(tmp_path):
    location = PathLocation(str(tmp_path / "scores.parquet"))
    chunk = pd.DataFrame({"score": [0.1, 0.2, 0.3, 0.4], "label": ["a", "b", "a", "b"]})
    with atomic_output(location, {}) as writer:
        writer.write(chunk)
        writer.write(chunk)

    group = pq.read_metadata(location.path).row_group(1)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["score"] and "PLAIN" in encodings["score"]
    assert "RLE_DICTIONARY" in encodings["label"]
