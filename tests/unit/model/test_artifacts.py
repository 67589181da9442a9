"""sha256 of files and directories, parameter files, and the dataset definitions pickled with a model."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro_datasets.pickle import PickleDataset

from airflow_kedro_mlflow.exceptions import ArtifactNotFoundError, KedroPipelineModelError
from airflow_kedro_mlflow.model import sha256_path
from airflow_kedro_mlflow.model.artifacts import (
    artifact_dataset_config,
    load_artifact,
    load_parameter,
    safe_filename,
    save_parameter,
)


def test_file_hash_is_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"fitted")
    assert sha256_path(path) == sha256_path(str(path)) == hashlib.sha256(b"fitted").hexdigest()


def test_directory_hash_is_location_independent_and_content_sensitive(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "data").write_bytes(b"weights")
    expected = hashlib.sha256(
        (
            f"saved_model.pb\0{hashlib.sha256(b'graph').hexdigest()}\n"
            f"variables/data\0{hashlib.sha256(b'weights').hexdigest()}\n"
        ).encode()
    ).hexdigest()
    assert sha256_path(model) == expected
    copy = shutil.copytree(model, tmp_path / "elsewhere" / "copy")
    assert sha256_path(copy) == expected
    (copy / "variables" / "data").rename(copy / "variables" / "renamed")
    assert sha256_path(copy) != expected


def test_hash_of_a_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        sha256_path(tmp_path / "nope")


@pytest.mark.parametrize(
    ("value", "suffix"),
    [
        (0.5, ".json"),
        ({"depth": 3, "features": ["a", "b"], "on": True}, ".json"),
        ((1, 2), ".pkl"),
        ({1: "int key"}, ".pkl"),
        (np.float64(0.25), ".pkl"),
        ([1, 2.0], ".json"),
    ],
)
def test_parameters_round_trip_with_their_types(tmp_path, value, suffix):
    path = save_parameter("params:model.options", value, tmp_path)
    assert path.name == f"params_model.options{suffix}"
    loaded = load_parameter(path)
    assert loaded == value and type(loaded) is type(value)
    if suffix == ".json":
        assert json.loads(path.read_text()) == value


def test_safe_filename():
    assert safe_filename("params:model.threshold") == "params_model.threshold"
    assert safe_filename("namespace.model@pickle") == "namespace.model_pickle"
    assert safe_filename(":::") == "artifact"


def test_dataset_config_leaves_credentials_out(tmp_path):
    catalog = DataCatalog({"model": PickleDataset(filepath=str(tmp_path / "m.pkl"), credentials={"token": "s3cr3t"})})
    config = artifact_dataset_config("model", catalog)
    assert config["filepath"] == str(tmp_path / "m.pkl")
    assert "credentials" not in config and "s3cr3t" not in repr(config)


def test_dataset_config_refuses_memory_datasets_and_undeclared_names():
    catalog = DataCatalog({"model": MemoryDataset(1)})
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'model' is a MemoryDataset")):
        artifact_dataset_config("model", catalog)
    with pytest.raises(ArtifactNotFoundError, match=re.escape("Artifact 'modle', an input of the inference")) as e:
        artifact_dataset_config("modle", catalog)
    assert "Did you mean 'model'?" in str(e.value)


def test_load_artifact_reads_the_packed_copy_unversioned(tmp_path):
    PickleDataset(filepath=str(tmp_path / "copy.pkl")).save({"fitted": True})
    config = {"type": "pickle.PickleDataset", "filepath": "/training/machine/m.pkl", "versioned": True}
    assert load_artifact("model", config, tmp_path / "copy.pkl") == {"fitted": True}


def test_load_artifact_failure_names_the_artifact_and_type(tmp_path):
    config = {"type": "not_installed.SomeDataset", "filepath": "x"}
    with pytest.raises(KedroPipelineModelError, match=re.escape("Cannot load artifact 'model' from ")):
        load_artifact("model", config, tmp_path / "copy.pkl")
