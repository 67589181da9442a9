"""Requirements pinned into a logged model, and the project code shipped with it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import airflow_kedro_mlflow
from airflow_kedro_mlflow.exceptions import KedroProjectError
from airflow_kedro_mlflow.model import default_pip_requirements, model_code_paths, project_code_paths


def test_pins_kedro_kedro_datasets_and_mlflow_as_installed():
    assert default_pip_requirements() == [
        f"kedro=={metadata.version('kedro')}",
        f"kedro-datasets=={metadata.version('kedro-datasets')}",
        f"mlflow=={metadata.version('mlflow')}",
    ]


@pytest.mark.slow
def test_pins_a_project_installed_from_an_index():
    assert default_pip_requirements("sklearn")[-1] == f"scikit-learn=={metadata.version('scikit-learn')}"


def test_does_not_pin_a_project_installed_from_a_local_path():
    """This package is installed from the checkout (editable, or a locally built wheel): no index has it."""
    assert default_pip_requirements("airflow_kedro_mlflow") == default_pip_requirements()


def test_code_paths_is_the_package_directory():
    assert project_code_paths("airflow_kedro_mlflow") == [str(Path(airflow_kedro_mlflow.__file__).parent)]


def test_code_paths_of_an_unimportable_package_raises():
    with pytest.raises(KedroProjectError, match=re.escape("package 'no_such_kedro_project' cannot be imported")):
        project_code_paths("no_such_kedro_project")


def test_a_source_checkout_project_lists_its_declared_dependencies_pinned(tmp_path, monkeypatch):
    """The project is shipped as code, so what it imports must be installable where the model is served."""
    package = tmp_path / "src" / "checkout_project"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "checkout-project"\ndependencies = [\n'
        '  "scikit-learn>=1.0", "airflow-kedro-mlflow", "kedro>=1.0,<2", "not-installed-anywhere>=2",\n'
        "  \"old-only; python_version < '3.0'\",\n]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "src"))

    requirements = default_pip_requirements("checkout_project")

    assert requirements == [
        *default_pip_requirements(),
        "not-installed-anywhere>=2",
        f"scikit-learn=={metadata.version('scikit-learn')}",
    ]


def test_model_code_paths_ship_the_project_and_this_package(tmp_path, monkeypatch):
    (tmp_path / "shipped_project").mkdir()
    (tmp_path / "shipped_project" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_code_paths("shipped_project") == [
        str(tmp_path / "shipped_project"),
        str(Path(airflow_kedro_mlflow.__file__).parent),
    ]
