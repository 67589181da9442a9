"""Fixtures of the model tests: a trained classifier catalog in a temporary folder, and a model built on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DataCatalog

from airflow_kedro_mlflow.model import KedroPipelineModel
from airflow_kedro_mlflow.pipeline import PipelineML
from tests.unit.model.classifier_pipeline import classifier_catalog, classifier_pipeline_ml, train


@pytest.fixture
def pipeline_ml() -> PipelineML:
    return classifier_pipeline_ml()


@pytest.fixture
def trained_catalog(tmp_path: Path, pipeline_ml: PipelineML) -> DataCatalog:
    """The catalog after one real training run: versioned scaler and classifier pickles exist under tmp_path."""
    catalog = classifier_catalog(tmp_path / "data")
    train(pipeline_ml, catalog)
    return catalog


@pytest.fixture
def model(pipeline_ml: PipelineML, trained_catalog: DataCatalog) -> KedroPipelineModel:
    return KedroPipelineModel(pipeline_ml, trained_catalog)
