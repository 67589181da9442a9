"""kedro_project: one way to open a Kedro project, with errors naming the path, env or pipeline at fault."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from airflow_kedro_mlflow.exceptions import KedroProjectError
from airflow_kedro_mlflow.kedro_project import (
    bootstrap,
    get_pipeline,
    open_session,
    register_session_hooks,
)


def test_bootstrap_reads_the_project_metadata(example_project: Path) -> None:
    project = bootstrap(example_project)

    assert project.package_name == "kedro_classifier"
    assert project.project_path == example_project.resolve()
    assert project.source_dir == example_project.resolve() / "src"


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(KedroProjectError, match=re.escape(f"{missing} does not exist")):
        bootstrap(missing)


def test_folder_without_kedro_pyproject_is_not_a_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")

    with pytest.raises(KedroProjectError, match=re.escape(f"{tmp_path} is not a Kedro project")):
        bootstrap(tmp_path)


def test_kedro_pyproject_with_missing_keys_is_explained(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.kedro]\npackage_name = 'x'\n")

    with pytest.raises(KedroProjectError, match=r"not a usable Kedro project.*project_name"):
        bootstrap(tmp_path)


def test_open_session_yields_a_session_of_the_project(example_project: Path) -> None:
    with open_session(example_project, runtime_params={"C": 0.25}) as session:
        context = session.load_context()

    assert Path(session.store["project_path"]) == example_project.resolve()
    assert context.params["C"] == 0.25
    assert context.params["threshold"] == 0.5


def test_data_dir_runtime_param_moves_every_catalog_path(example_project: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"

    with open_session(example_project, runtime_params={"data_dir": str(scratch)}) as session:
        catalog = session.load_context().catalog
    with open_session(example_project) as session:
        default = session.load_context().catalog

    assert str(scratch / "06_models" / "scaler.pkl") in str(catalog.get("scaler"))
    assert str(example_project.resolve() / "data" / "06_models" / "scaler.pkl") in str(default.get("scaler"))


def test_unknown_env_lists_the_available_ones_with_a_close_match(example_project: Path) -> None:
    (example_project / "conf" / "prod").mkdir()

    with (
        pytest.raises(KedroProjectError, match=re.escape("Kedro env 'prd'")) as info,
        open_session(example_project, env="prd"),
    ):
        pass
    assert "available envs: ['local', 'prod']" in str(info.value)
    assert "Did you mean 'prod'?" in str(info.value)


def test_unknown_env_from_kedro_env_says_where_it_came_from(
    example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEDRO_ENV", "staging")

    with pytest.raises(KedroProjectError, match="KEDRO_ENV environment variable"), open_session(example_project):
        pass


def test_missing_conf_source_is_named(example_project: Path, tmp_path: Path) -> None:
    with (
        pytest.raises(KedroProjectError, match=re.escape(f"{tmp_path / 'conf2'} of Kedro project")),
        open_session(example_project, conf_source=str(tmp_path / "conf2")),
    ):
        pass


def test_conf_source_elsewhere_is_used(example_project: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf_elsewhere"
    shutil.copytree(example_project / "conf", conf)
    (conf / "base" / "parameters.yml").write_text(
        "threshold: 0.9\nC: 1.0\nmax_iter: 10\ntest_size: 0.2\nrandom_state: 1\n"
    )

    with open_session(example_project, conf_source=str(conf)) as session:
        assert session.load_context().params["threshold"] == 0.9


def test_runtime_params_must_be_a_mapping(example_project: Path) -> None:
    with (
        pytest.raises(KedroProjectError, match="runtime_params must be a mapping"),
        open_session(example_project, runtime_params="C=1"),
    ):
        pass


def test_get_pipeline_returns_the_registered_pipeline_ml(example_project: Path) -> None:
    training = get_pipeline(example_project, "training")

    assert training.input_name == "instances"
    assert {node.name for node in training.inference.nodes} == {"scale_instances", "predict"}


def test_unknown_pipeline_suggests_close_matches(example_project: Path) -> None:
    with open_session(example_project) as session, pytest.raises(KedroProjectError) as info:
        get_pipeline(session, "trainig")

    message = str(info.value)
    assert "no pipeline named 'trainig'" in message
    assert "['__default__', 'inference', 'training']" in message
    assert "Did you mean 'training'?" in message


def test_broken_registry_is_reported_once_with_the_project(example_project: Path) -> None:
    registry = example_project / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text("def register_pipelines():\n    raise RuntimeError('registry is broken')\n")

    with pytest.raises(KedroProjectError, match=r"register_pipelines\(\) of Kedro project .*registry is broken"):
        get_pipeline(example_project, "training")


@pytest.mark.slow
def test_each_copy_of_a_project_runs_its_own_code(example_project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "kedro_classifier"
    shutil.copytree(example_project, other)
    registry = other / "src" / "kedro_classifier" / "pipeline_registry.py"
    registry.write_text(
        registry.read_text().replace(
            '"inference": inference_pipeline,', '"inference": inference_pipeline,\n"extra": inference_pipeline,'
        )
    )

    first = get_pipeline(example_project, "inference")
    assert get_pipeline(other, "extra") is not None
    with pytest.raises(KedroProjectError, match="no pipeline named 'extra'"):
        get_pipeline(example_project, "extra")
    assert get_pipeline(example_project, "inference").nodes == first.nodes


@pytest.mark.slow
def test_each_copy_of_a_project_gets_its_own_settings(example_project: Path, tmp_path: Path) -> None:
    """Kedro reads settings.py while bootstrapping: a copy bootstrapped after another must not keep the other's."""
    other = tmp_path / "other" / "kedro_classifier"
    shutil.copytree(example_project, other)
    settings_file = other / "src" / "kedro_classifier" / "settings.py"
    settings_file.write_text(settings_file.read_text() + "\nHOOKS = (object(),)\n")

    bootstrap(example_project)
    from kedro.framework.project import settings

    assert not settings.HOOKS
    bootstrap(other)
    assert len(settings.HOOKS) == 1
    bootstrap(example_project)
    assert not settings.HOOKS


def test_register_session_hooks_adds_a_hook_once(example_project: Path) -> None:
    class Recorder:
        pass

    hook = Recorder()
    with open_session(example_project) as session:
        register_session_hooks(session, hook)
        register_session_hooks(session, hook)
        assert session._hook_manager.is_registered(hook)
        assert [plugin for plugin in session._hook_manager.get_plugins() if plugin is hook] == [hook]
