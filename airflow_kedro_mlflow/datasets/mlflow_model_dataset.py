"""``MlflowModelDataset``: a Kedro dataset whose data is a model logged in MLflow.

Load a logged model by run (``runs:/<run_id>/<name>``), by registry URI (``models:/<name>@<alias>``,
``models:/<name>/<version>``) or by MLflow 3 model id (``models:/m-…``); save by logging (pyfunc ``python_model``
workflow by default, or any MLflow flavor's ``log_model``). It replaces kedro-mlflow's
``MlflowModelTrackingDataset`` and ``MlflowModelRegistryDataset`` (their option names are kept where they make sense:
``flavor``, ``run_id``, ``artifact_path``, ``pyfunc_workflow``, ``load_args``, ``save_args``)::

    inference_model:
      type: airflow_kedro_mlflow.datasets.MlflowModelDataset
      model_uri: models:/kedro_classifier@champion
      tracking_uri: http://127.0.0.1:5000
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from airflow_kedro_mlflow.tracking.tags import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    GIT_DIRTY_TAG,
    GIT_SHA_TAG,
    KEDRO_ENV_TAG,
    KEDRO_PIPELINE_TAG,
    KEDRO_SESSION_TAG,
    MAP_INDEX_TAG,
    TASK_ID_TAG,
    TRY_NUMBER_TAG,
)

if TYPE_CHECKING:
    from types import ModuleType

    from mlflow import MlflowClient
    from mlflow.entities import Run

    from airflow_kedro_mlflow.model import KedroPipelineModel
    from airflow_kedro_mlflow.modelify.result import ModelifyResult

logger = logging.getLogger(__name__)

#: Tags of the run a model is saved in that the logged model and its version inherit, as modelify tags them.
LINEAGE_TAGS = frozenset(
    {DAG_ID_TAG, DAG_RUN_ID_TAG, TASK_ID_TAG, MAP_INDEX_TAG, TRY_NUMBER_TAG, KEDRO_ENV_TAG, KEDRO_PIPELINE_TAG,
     KEDRO_SESSION_TAG, GIT_SHA_TAG, GIT_DIRTY_TAG}
)  # fmt: skip

_PYFUNC = "mlflow.pyfunc"
_WORKFLOWS = ("python_model",)


class MlflowModelDataset(AbstractDataset[Any, Any]):
    """Load a model logged in MLflow, or log one when saved.

    Exactly one way of naming the model to load: ``model_uri``; or ``run_id`` (+ ``artifact_path``, default
    ``model``); or ``registered_model_name`` with ``alias`` or ``version``. A dataset given none of them can only
    be saved first: saving logs the model (into the active MLflow run, the ``run_id`` run, or a new run) and later
    loads return that exact model.

    :param flavor: MLflow flavor module whose ``load_model``/``log_model`` are used, e.g. ``mlflow.pyfunc`` (default)
        or ``mlflow.sklearn``.
    :param model_uri: ``runs:/…``, ``models:/…`` or any URI ``<flavor>.load_model`` accepts.
    :param run_id: MLflow run holding the model (load), or the run to log into (save).
    :param artifact_path: name of the model in its run (MLflow 3's ``name``); default ``model``.
    :param registered_model_name: registered model to load from (with ``alias`` or ``version``), or to register a
        version of when saving.
    :param alias: registry alias to load, or to set on the version a save registers.
    :param version: registry version to load.
    :param pyfunc_workflow: ``python_model``: a saved object is a ``mlflow.pyfunc.PythonModel`` (only for the pyfunc
        flavor).
    :param tracking_uri: MLflow tracking URI used for this dataset only; default: the process' own
        (``MLFLOW_TRACKING_URI``).
    :param registry_uri: MLflow registry URI; default: the tracking URI.
    :param load_args: extra arguments of ``<flavor>.load_model``.
    :param save_args: extra arguments of ``<flavor>.log_model`` (``signature``, ``pip_requirements``…). For the pyfunc
        flavor kedro, kedro-datasets and mlflow are pinned unless ``pip_requirements`` or ``conda_env`` is given; a
        ``KedroPipelineModel`` takes modelify's ``log_model_kwargs`` (``signature="auto"`` by default, the project's
        package shipped with ``code_paths``).
    :param metadata: free-form metadata, ignored by Kedro (Kedro-Viz and plugins read it).
    """

    def __init__(
        self,
        *,
        flavor: str = _PYFUNC,
        model_uri: str | None = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        registered_model_name: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
        pyfunc_workflow: str = "python_model",
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if alias is not None and version is not None:
            raise DatasetError(
                f"MlflowModelDataset: alias={alias!r} and version={version!r} both given; a registered model is "
                "loaded by one of them. Keep one."
            )
        if (alias is not None or version is not None) and registered_model_name is None and model_uri is None:
            raise DatasetError(
                "MlflowModelDataset: alias/version need registered_model_name (e.g. registered_model_name: "
                "kedro_classifier, alias: champion), or give model_uri: models:/<name>@<alias>."
            )
        if model_uri is not None and run_id is not None:
            raise DatasetError(
                f"MlflowModelDataset: model_uri={model_uri!r} and run_id={run_id!r} both given; pass model_uri "
                "alone, or run_id with artifact_path."
            )
        if pyfunc_workflow not in _WORKFLOWS:
            raise DatasetError(
                f"MlflowModelDataset: pyfunc_workflow={pyfunc_workflow!r} is not supported; use 'python_model' "
                "(save a mlflow.pyfunc.PythonModel instance), or another flavor for other model objects."
            )
        if artifact_path is not None and ("/" in artifact_path or ":" in artifact_path or not artifact_path):
            raise DatasetError(
                f"MlflowModelDataset: artifact_path={artifact_path!r} must be a plain name without '/' or ':', "
                "e.g. 'model'."
            )
        self._flavor = flavor
        self._model_uri = model_uri
        self._run_id = run_id
        self._artifact_path = artifact_path or "model"
        self._registered_model_name = registered_model_name
        self._alias = alias
        self._version = str(version) if version is not None else None
        self._pyfunc_workflow = pyfunc_workflow
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self._load_args = deepcopy(load_args or {})
        self._save_args = deepcopy(save_args or {})
        self.metadata = metadata
        self._flavor_module()  # fail at catalog creation, not at the first load

    @property
    def model_uri(self) -> str | None:
        """The URI a load reads: given, built from run/registry options, or set by the last save."""
        if self._model_uri is not None:
            return self._model_uri
        if self._run_id is not None:
            return f"runs:/{self._run_id}/{self._artifact_path}"
        if self._registered_model_name is not None and self._alias is not None:
            return f"models:/{self._registered_model_name}@{self._alias}"
        if self._registered_model_name is not None and self._version is not None:
            return f"models:/{self._registered_model_name}/{self._version}"
        return None

    def load(self) -> Any:
        """Load the model with ``<flavor>.load_model``; a missing model is a ``DatasetError`` naming its URI."""
        uri = self.model_uri
        if uri is None:
            raise DatasetError(
                "MlflowModelDataset has no model to load: set model_uri (runs:/<run_id>/<name> or "
                "models:/<name>@<alias>), run_id, or registered_model_name with alias/version — or save a model "
                "into it first."
            )
        from mlflow.exceptions import MlflowException

        self._require_tracking(uri)
        with self._mlflow_uris():
            try:
                return self._flavor_module().load_model(uri, **self._load_args)
            except (MlflowException, OSError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                raise DatasetError(
                    f"MlflowModelDataset: cannot load MLflow model {uri!r} from {self._where()}: {message} "
                    "Check the run id / model name and alias (see the MLflow UI), the tracking URI, or run the "
                    "pipeline that logs this model first."
                ) from exc

    def save(self, data: Any) -> None:
        """Log ``data`` as a model (and register it when ``registered_model_name`` is set); loads then return it.

        Everything is checked before MLflow is touched, so a refused object leaves no run behind. The run is the
        one lifecycle of :func:`~airflow_kedro_mlflow.tracking.runs.run_scope`: the active run, the ``run_id`` run
        (resumed), or a new one (in ``MLFLOW_EXPERIMENT_NAME``, else the Kedro project's package name, else
        ``Default``), deleted again when logging fails.

        A ``KedroPipelineModel`` is logged by modelify's build-and-log
        (:func:`~airflow_kedro_mlflow.modelify.build.log_kedro_pipeline_model`), so it loads where the project is not
        installed: the project's package shipped with ``code_paths``, pinned requirements, the run's lineage tags,
        registration once per model. Other objects go to their flavor's own ``log_model``.
        """
        import mlflow

        from airflow_kedro_mlflow.tracking.runs import run_scope

        self._require_tracking(None)
        kedro_model = self._check_savable(data)
        with self._mlflow_uris():
            client = mlflow.MlflowClient()
            experiment_id = None
            if mlflow.active_run() is None and self._run_id is None:
                experiment_id = self._experiment_for_new_run(client)
            with run_scope(client, run_id=self._run_id, experiment_id=experiment_id, delete_on_failure=True) as run:
                tags = _lineage_tags(run)
                if kedro_model:
                    result = self._log_kedro_pipeline_model(data, run.info.run_id, tags)
                else:
                    result = self._log_with_flavor(data, run, tags, client)
            logger.info("Logged model %s in MLflow run %s", result.model_uri, run.info.run_id)
        self._model_uri = result.model_uri
        self._run_id = None

    def _check_savable(self, data: Any) -> bool:
        """Refuse what cannot be logged, before any side effect; return whether ``data`` is a KedroPipelineModel."""
        import mlflow

        from airflow_kedro_mlflow.model import KedroPipelineModel
        from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name

        if self._registered_model_name is not None:
            validate_registered_model_name(self._registered_model_name)
        validate_aliases(self._aliases(), self._registered_model_name)
        if self._flavor != _PYFUNC:
            return False
        if not isinstance(data, mlflow.pyfunc.PythonModel):
            raise DatasetError(
                f"MlflowModelDataset (flavor mlflow.pyfunc, pyfunc_workflow 'python_model') can only save a "
                f"mlflow.pyfunc.PythonModel, got {type(data).__name__}. Save a PythonModel (e.g. a "
                "KedroPipelineModel), or set flavor to the model's MLflow flavor (e.g. mlflow.sklearn)."
            )
        if not isinstance(data, KedroPipelineModel):
            return False
        from airflow_kedro_mlflow.modelify.options import normalize_log_model_kwargs

        normalize_log_model_kwargs(self._kedro_log_model_kwargs(), self._registered_model_name)
        return True

    def _log_kedro_pipeline_model(self, model: KedroPipelineModel, run_id: str, tags: dict[str, str]) -> ModelifyResult:
        """Log (and register) a KedroPipelineModel through the one build-and-log, idempotently per run and content."""
        from airflow_kedro_mlflow.modelify.build import log_kedro_pipeline_model

        with tempfile.TemporaryDirectory(prefix="akm-dataset-") as folder:
            model.extract_pipeline_artifacts(folder)
            # Same run, same name, same artifacts: the same model. Saving it again (a retry of a task sharing the run)
            # reuses the logged model and its version; a model with other artifacts is a new one.
            key = {"run_id": run_id, "name": self._artifact_path}
            key.update({f"sha256:{name}": digest for name, digest in sorted(model.artifact_sha256.items())})
            return log_kedro_pipeline_model(
                model,
                # The catalog the model was built from (params and input data for signature="auto"); None once the
                # model was unpickled. KedroPipelineModel keeps it private as it is never pickled with the model.
                catalog=getattr(model, "_catalog", None),
                registered_model_name=self._registered_model_name,
                aliases=self._aliases(),
                log_model_kwargs=self._kedro_log_model_kwargs(),
                project_package=_project_package(),
                mlflow_tags=tags,
                idempotency_key=key,
            )

    def _log_with_flavor(self, data: Any, run: Run, tags: dict[str, str], client: MlflowClient) -> ModelifyResult:
        """Log with the flavor's own ``log_model``; register through the same registration as modelify."""
        from airflow_kedro_mlflow.modelify.build import register_logged_model
        from airflow_kedro_mlflow.modelify.result import ModelifyResult

        flavor = self._flavor_module()
        args = self._pyfunc_save_args() if self._flavor == _PYFUNC else dict(self._save_args)
        if "tags" in inspect.signature(flavor.log_model).parameters:
            args["tags"] = {**tags, **dict(args.get("tags") or {})}
        if self._flavor == _PYFUNC:
            info = flavor.log_model(name=self._artifact_path, python_model=data, **args)
        else:
            info = flavor.log_model(data, name=self._artifact_path, **args)
        result = ModelifyResult(
            model_uri=info.model_uri,
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            model_id=info.model_id,
        )
        if self._registered_model_name is not None:
            register_logged_model(result, self._registered_model_name, self._aliases(), tags=tags, client=client)
        return result

    def _aliases(self) -> list[str]:
        return [self._alias] if self._alias else []

    def _kedro_log_model_kwargs(self) -> dict[str, Any]:
        """``save_args`` as modelify's ``log_model_kwargs``, named after this dataset's ``artifact_path``."""
        kwargs = {key: value for key, value in self._save_args.items() if key not in ("artifact_path", "name")}
        return {**kwargs, "name": self._artifact_path}

    def _experiment_for_new_run(self, client: MlflowClient) -> str:
        """The experiment of a run this dataset starts: as the Kedro hook chooses it, ``Default`` outside a project."""
        from airflow_kedro_mlflow.tracking.runs import get_or_create_experiment

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or _project_package() or "Default"
        return get_or_create_experiment(client, name)

    def _pyfunc_save_args(self) -> dict[str, Any]:
        """``save_args`` of a plain ``PythonModel`` with kedro, kedro-datasets and mlflow pinned, unless the user chose.

        Without requirements MLflow infers them by loading the model in a subprocess, which is slow and misses
        Kedro's dataset plugins. (A ``KedroPipelineModel`` gets modelify's environment instead.)
        """
        args = dict(self._save_args)
        if not any(args.get(key) for key in ("conda_env", "pip_requirements")):
            from airflow_kedro_mlflow.model import default_pip_requirements

            extra = args.pop("extra_pip_requirements", None) or []
            if isinstance(extra, str):
                args["extra_pip_requirements"] = extra  # a requirements file: MLflow reads it
            else:
                args["pip_requirements"] = default_pip_requirements() + [str(line) for line in extra]
        return args

    def _exists(self) -> bool:
        uri = self.model_uri
        if uri is None:
            return False
        from mlflow.exceptions import MlflowException
        from mlflow.models import get_model_info

        self._require_tracking(uri)
        with self._mlflow_uris():
            try:
                get_model_info(uri)
            except (MlflowException, OSError):
                return False
        return True

    def _describe(self) -> dict[str, Any]:
        from airflow_kedro_mlflow.tracking import strip_userinfo

        return {
            "flavor": self._flavor,
            "model_uri": self.model_uri,
            "artifact_path": self._artifact_path,
            "registered_model_name": self._registered_model_name,
            "alias": self._alias,
            "version": self._version,
            "tracking_uri": strip_userinfo(self._tracking_uri) if self._tracking_uri else None,
            "load_args": self._load_args,
            "save_args": {key: value for key, value in self._save_args.items() if key != "input_example"},
        }

    def _flavor_module(self) -> ModuleType:
        return import_flavor(self._flavor, "MlflowModelDataset", ("load_model", "log_model"))

    def _require_tracking(self, uri: str | None) -> None:
        """Refuse MLflow's implicit ``./mlflow.db``: a ``runs:/``/``models:/`` URI or a save needs a known server."""
        import mlflow

        if uri is not None and not uri.startswith(("runs:", "models:")):
            return  # a local path or a storage URI: no tracking server involved
        if self._tracking_uri is None and not mlflow.is_tracking_uri_set():
            raise DatasetError(
                "MlflowModelDataset has no MLflow tracking server: set tracking_uri in its catalog entry (e.g. "
                "http://127.0.0.1:5000) or MLFLOW_TRACKING_URI. MLflow's implicit ./mlflow.db is not used."
            )

    def _where(self) -> str:
        import mlflow

        from airflow_kedro_mlflow.tracking import strip_userinfo

        return f"tracking URI {strip_userinfo(str(self._tracking_uri or mlflow.get_tracking_uri()))}"

    @contextmanager
    def _mlflow_uris(self) -> Iterator[None]:
        """Point MLflow at this dataset's tracking/registry URIs for one call, then restore the process' ones."""
        if self._tracking_uri is None and self._registry_uri is None:
            yield
            return
        import mlflow

        from airflow_kedro_mlflow.tracking import TrackingConfig

        # from_env keeps the MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN a user set for this server.
        tracking = TrackingConfig.from_env(
            tracking_uri=self._tracking_uri or mlflow.get_tracking_uri(), registry_uri=self._registry_uri
        )
        with tracking.activate():
            yield


def _project_package() -> str | None:
    """The configured Kedro project's package (``kedro.framework.project.PACKAGE_NAME``), None outside a project.

    Read from ``sys.modules`` only: importing ``kedro.framework.project`` configures logging, and a process that
    never imported it runs no Kedro project.
    """
    project = sys.modules.get("kedro.framework.project")
    package = getattr(project, "PACKAGE_NAME", None)
    return str(package) if package else None


def _lineage_tags(run: Run) -> dict[str, str]:
    """The run's lineage tags (Airflow task try, Kedro env/pipeline/session, git), for the model and its version."""
    return {key: value for key, value in run.data.tags.items() if key in LINEAGE_TAGS}


def import_flavor(flavor: str, dataset_type: str, functions: tuple[str, ...]) -> ModuleType:
    """Import an MLflow flavor module (``mlflow.sklearn``…) that has ``functions``, or raise a ``DatasetError``
    naming the dataset type and the flavor."""
    try:
        module = importlib.import_module(flavor)
    except ImportError as exc:
        raise DatasetError(
            f"{dataset_type}: flavor {flavor!r} cannot be imported ({exc}). Use an MLflow flavor module such as "
            "'mlflow.pyfunc' or 'mlflow.sklearn', and install what it needs."
        ) from exc
    if not all(hasattr(module, name) for name in functions):
        raise DatasetError(
            f"{dataset_type}: {flavor!r} is not an MLflow flavor (it has no {'/'.join(functions)}); use e.g. "
            "'mlflow.pyfunc' or 'mlflow.sklearn'."
        )
    return module
