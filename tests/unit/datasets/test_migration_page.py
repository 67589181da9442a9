"""docs/migrating_from_kedro_mlflow.md stays true: its catalog builds, every dataset has a row, every check exists.

The page's ```python blocks run in tests/integration/test_docs_snippets.py; ```yaml blocks are not run there, so the
catalog block is built here into a Kedro DataCatalog, each dataset materialized (a wrong argument fails).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kedro.io import DataCatalog

import airflow_kedro_mlflow.datasets as datasets

REPO_ROOT = Path(__file__).resolve().parents[3]
PAGE = REPO_ROOT / "docs" / "migrating_from_kedro_mlflow.md"
TESTS = REPO_ROOT / "tests"

#: kedro-mlflow 2.0.3's datasets (kedro_mlflow.io.artifacts / metrics / models ``__all__``).
KEDRO_MLFLOW_DATASETS = {
    "artifacts": ["MlflowArtifactDataset"],
    "metrics": ["MlflowMetricDataset", "MlflowMetricHistoryDataset", "MlflowMetricsHistoryDataset"],
    "models": ["MlflowModelLocalFileSystemDataset", "MlflowModelRegistryDataset", "MlflowModelTrackingDataset"],
}


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_yaml_catalog_of_the_page_builds_every_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative filepaths of the block resolve here
    blocks = yaml_blocks(PAGE.read_text(encoding="utf-8"))
    assert blocks

    for block in blocks:
        config = yaml.safe_load(block)
        catalog = DataCatalog.from_config(config)
        for name, entry in config.items():
            assert entry["type"].startswith("airflow_kedro_mlflow.datasets."), name
            assert type(catalog.get(name)).__name__ == entry["type"].rsplit(".", 1)[1]


def test_every_kedro_mlflow_dataset_has_a_row_and_a_class_of_the_same_name():
    text = PAGE.read_text(encoding="utf-8")

    for kind, names in KEDRO_MLFLOW_DATASETS.items():
        for name in names:
            assert f"`kedro_mlflow.io.{kind}.{name}" in text, name
            assert f"`airflow_kedro_mlflow.datasets.{name}`" in text, name
            assert hasattr(datasets, name), name


def test_every_check_the_tables_name_exists():
    text = PAGE.read_text(encoding="utf-8")
    defined = {
        match
        for path in TESTS.rglob("test_*.py")
        for match in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    }
    files = {path.relative_to(TESTS).as_posix() for path in TESTS.rglob("test_*.py")}

    named_tests = set(re.findall(r"(?:::|`)(test_\w+)(?=`)", text))
    named_files = set(re.findall(r"`((?:\w+/)*test_\w+\.py)", text))
    assert named_tests and named_files
    assert sorted(named_tests - defined) == []
    for name in named_files:
        assert any(file == name or file.endswith("/" + name) for file in files), name
