"""kedro-mlflow's model datasets, with their own argument names, on top of :class:`MlflowModelDataset`.

A kedro-mlflow catalog moves by changing ``type:`` only::

    regressor:                                    # log on save, load what was saved (or load_args.model_uri)
      type: airflow_kedro_mlflow.datasets.MlflowModelTrackingDataset
      flavor: mlflow.sklearn
      save_args: {name: regressor, registered_model_name: house_prices}

    champion:                                     # load a registered version by alias or version
      type: airflow_kedro_mlflow.datasets.MlflowModelRegistryDataset
      model_name: house_prices
      alias: champion

    local_model:                                  # save_model / load_model on a local folder, no tracking server
      type: airflow_kedro_mlflow.datasets.MlflowModelLocalFileSystemDataset
      flavor: mlflow.sklearn
      filepath: data/06_models/regressor

What kedro-mlflow accepts and this package does not (``pyfunc_workflow: loader_module``, registry stages, arguments
kedro-mlflow itself ignores) is refused with the argument's name and what to use instead.
"""

from __future__ import annotations

import shutil
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractVersionedDataset, DatasetError, Version

from airflow_kedro_mlflow.datasets.mlflow_model_dataset import MlflowModelDataset, import_flavor
from airflow_kedro_mlflow.datasets.tracking_run import START_A_RUN, refuse_unsupported

if TYPE_CHECKING:
    from types import ModuleType

_PYFUNC = "mlflow.pyfunc"
_TRACKING_ARGS = ("flavor", "pyfunc_workflow", "load_args", "save_args", "metadata")
_REGISTRY_ARGS = ("model_name", "stage_or_version", "alias", "flavor", "pyfunc_workflow", "load_args", "metadata")
_LOCAL_ARGS = ("filepath", "flavor", "pyfunc_workflow", "load_args", "save_args", "version", "metadata")
_LOADER_MODULE = (
    "pyfunc_workflow 'loader_module' is not supported: save a mlflow.pyfunc.PythonModel with pyfunc_workflow: "
    "python_model, or set flavor to the model's own MLflow flavor (e.g. mlflow.sklearn)."
)
_OLD_TRACKING_ARGS = (
    "kedro-mlflow 2.x dropped run_id/artifact_path from MlflowModelTrackingDataset: load a logged model with "
    "load_args: {model_uri: runs:/<run_id>/<name>} (or models:/<model_id>), or use "
    "airflow_kedro_mlflow.datasets.MlflowModelDataset, which takes run_id and artifact_path."
)


class MlflowModelTrackingDataset(MlflowModelDataset):
    """kedro-mlflow's ``MlflowModelTrackingDataset``: save logs the model into the active run; load reads it back.

    :param flavor: MLflow flavor module, e.g. ``mlflow.sklearn``; default ``mlflow.pyfunc``.
    :param pyfunc_workflow: ``python_model`` (the only workflow supported; the default).
    :param load_args: ``model_uri`` (``runs:/<run_id>/<name>``, ``models:/…``) to load an existing model; other keys
        go to ``<flavor>.load_model``.
    :param save_args: ``<flavor>.log_model`` arguments; ``name`` (or ``artifact_path``) names the model in the run
        (default ``model``); ``registered_model_name`` also registers a version.
    :param metadata: free-form metadata, ignored by Kedro.
    """

    def __init__(
        self,
        *,
        flavor: str = _PYFUNC,
        pyfunc_workflow: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        label = "MlflowModelTrackingDataset"
        alternatives = {"run_id": _OLD_TRACKING_ARGS, "artifact_path": _OLD_TRACKING_ARGS}
        refuse_unsupported(label, unsupported, alternatives, _TRACKING_ARGS)
        if pyfunc_workflow == "loader_module":
            raise DatasetError(f"{label}: {_LOADER_MODULE}")
        load = deepcopy(load_args or {})
        save = deepcopy(save_args or {})
        names = [save.pop(key) for key in ("name", "artifact_path") if save.get(key)]
        if len(set(names)) > 1:
            raise DatasetError(
                f"{label}: save_args name={names[0]!r} and artifact_path={names[1]!r} differ; keep name."
            )
        self._user_model_uri = load.pop("model_uri", None)
        super().__init__(
            flavor=flavor,
            model_uri=self._user_model_uri,
            artifact_path=names[0] if names else None,
            registered_model_name=save.pop("registered_model_name", None),
            pyfunc_workflow=pyfunc_workflow or "python_model",
            load_args=load,
            save_args=save,
            metadata=metadata,
        )

    def save(self, data: Any) -> None:
        """Log ``data`` into the active MLflow run (register it with ``save_args.registered_model_name``)."""
        import mlflow

        if self._user_model_uri is not None:
            raise DatasetError(
                f"MlflowModelTrackingDataset: load_args model_uri={self._user_model_uri!r} names an existing model, "
                "so this dataset cannot save (MLflow never overwrites a model). Remove model_uri to log new models."
            )
        if mlflow.active_run() is None:
            raise DatasetError(f"MlflowModelTrackingDataset has no MLflow run to log the model into. {START_A_RUN}")
        super().save(data)


class MlflowModelRegistryDataset(MlflowModelDataset):
    """kedro-mlflow's ``MlflowModelRegistryDataset``: load a registered model by ``alias`` or version (load only).

    :param model_name: registered model name.
    :param stage_or_version: a version number, or ``latest`` (the default when no ``alias`` is given). Stages
        (``Production``, ``Staging``) are refused: MLflow deprecated them for aliases.
    :param alias: registry alias, e.g. ``champion``.
    :param flavor: MLflow flavor module; default ``mlflow.pyfunc``.
    :param pyfunc_workflow: ``python_model`` (the default; the only one supported).
    :param load_args: extra ``<flavor>.load_model`` arguments.
    :param metadata: free-form metadata, ignored by Kedro.
    """

    def __init__(
        self,
        *,
        model_name: str,
        stage_or_version: str | int | None = None,
        alias: str | None = None,
        flavor: str = _PYFUNC,
        pyfunc_workflow: str = "python_model",
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        label = f"MlflowModelRegistryDataset {model_name!r}"
        refuse_unsupported(label, unsupported, {"save_args": _REGISTRY_SAVE}, _REGISTRY_ARGS)
        if pyfunc_workflow == "loader_module":
            raise DatasetError(f"{label}: {_LOADER_MODULE}")
        if alias is not None and stage_or_version is not None:
            raise DatasetError(
                f"{label}: alias={alias!r} and stage_or_version={stage_or_version!r} both given; keep one."
            )
        if "model_uri" in (load_args or {}):
            raise DatasetError(
                f"{label}: load_args model_uri is not used here (model_name and alias/version name the model); use "
                "MlflowModelTrackingDataset with load_args: {model_uri: ...} to load by URI."
            )
        version = None if alias is not None else _registry_version(label, stage_or_version)
        super().__init__(
            flavor=flavor,
            registered_model_name=model_name,
            alias=alias,
            version=version,
            pyfunc_workflow=pyfunc_workflow,
            load_args=load_args,
            metadata=metadata,
        )

    def save(self, data: Any) -> None:
        """Refused, as in kedro-mlflow: a registry dataset only loads."""
        raise DatasetError(f"MlflowModelRegistryDataset {self._registered_model_name!r}: {_REGISTRY_SAVE}")


class MlflowModelLocalFileSystemDataset(AbstractVersionedDataset[Any, Any]):
    """kedro-mlflow's ``MlflowModelLocalFileSystemDataset``: ``<flavor>.save_model`` / ``load_model`` on a folder.

    No tracking server involved: the model is an MLflow model folder at ``filepath`` (versioned like any Kedro
    dataset with ``versioned: true``).

    :param filepath: the model folder.
    :param flavor: MLflow flavor module, e.g. ``mlflow.sklearn``; default ``mlflow.pyfunc``.
    :param pyfunc_workflow: ``python_model`` (the only one supported; the default).
    :param load_args: extra ``<flavor>.load_model`` arguments.
    :param save_args: extra ``<flavor>.save_model`` arguments.
    :param version: set by Kedro for ``versioned: true``.
    :param metadata: free-form metadata, ignored by Kedro.
    """

    def __init__(
        self,
        *,
        filepath: str,
        flavor: str = _PYFUNC,
        pyfunc_workflow: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        label = f"MlflowModelLocalFileSystemDataset {filepath!r}"
        refuse_unsupported(label, unsupported, {"log_args": _LOG_ARGS}, _LOCAL_ARGS)
        if pyfunc_workflow == "loader_module":
            raise DatasetError(f"{label}: {_LOADER_MODULE}")
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self._flavor = flavor
        self._pyfunc_workflow = pyfunc_workflow or "python_model"
        self._load_args = deepcopy(load_args or {})
        self._save_args = deepcopy(save_args or {})
        self.metadata = metadata
        self._flavor_module()

    def load(self) -> Any:
        return self._flavor_module().load_model(str(self._get_load_path()), **self._load_args)

    def save(self, data: Any) -> None:
        path = str(self._get_save_path())
        shutil.rmtree(path, ignore_errors=True)  # an unversioned folder is replaced: MLflow never overwrites one
        flavor = self._flavor_module()
        if self._flavor == _PYFUNC:
            flavor.save_model(path, python_model=data, **self._save_args)
        else:
            flavor.save_model(data, path, **self._save_args)

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:
            return False
        return (Path(str(path)) / "MLmodel").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "flavor": self._flavor, "version": self._version,
                "load_args": self._load_args, "save_args": self._save_args}  # fmt: skip

    def _flavor_module(self) -> ModuleType:
        return import_flavor(self._flavor, "MlflowModelLocalFileSystemDataset", ("load_model", "save_model"))


_REGISTRY_SAVE = (
    "a registry dataset only loads (as in kedro-mlflow). To log and register, save through "
    "MlflowModelTrackingDataset with save_args: {registered_model_name: ...}, or MlflowModelDataset with "
    "registered_model_name (and alias)."
)
_LOG_ARGS = (
    "kedro-mlflow accepts log_args here but never uses them (the model is only saved locally). Remove it; to log "
    "the model into the run, use MlflowModelTrackingDataset with save_args."
)


def _registry_version(label: str, stage_or_version: str | int | None) -> str:
    """A registry version (``"3"`` or ``"latest"``) from kedro-mlflow's ``stage_or_version``; stages are refused."""
    if stage_or_version is None:
        return "latest"
    text = str(stage_or_version)
    if text.isdigit() or text == "latest":
        return text
    raise DatasetError(
        f"{label}: stage_or_version={stage_or_version!r} is a registry stage; MLflow deprecated stages for aliases, "
        "and this package does not read them. Put an alias on the version (MlflowPromoteModelOperator, "
        "`airflow-kedro-mlflow promote`, or MlflowClient.set_registered_model_alias) and use alias: <alias>, or give "
        "a version number."
    )
