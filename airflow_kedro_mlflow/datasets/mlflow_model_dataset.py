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
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import Any

from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

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
        flavor kedro, kedro-datasets and mlflow are pinned unless ``pip_requirements`` or ``conda_env`` is given.
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
        self._load_args = deepcopy(load_args) or {}
        self._save_args = deepcopy(save_args) or {}
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
        """Log ``data`` as a model (and register it when ``registered_model_name`` is set); loads then return it."""
        import mlflow

        self._require_tracking(None)
        with self._mlflow_uris(), self._run() as run_id:
            flavor = self._flavor_module()
            if self._flavor == _PYFUNC:
                if not isinstance(data, mlflow.pyfunc.PythonModel):
                    raise DatasetError(
                        f"MlflowModelDataset (flavor mlflow.pyfunc, pyfunc_workflow 'python_model') can only save a "
                        f"mlflow.pyfunc.PythonModel, got {type(data).__name__}. Save a PythonModel (e.g. a "
                        "KedroPipelineModel), or set flavor to the model's MLflow flavor (e.g. mlflow.sklearn)."
                    )
                save_args = self._pyfunc_save_args()
                with tempfile.TemporaryDirectory(prefix="akm-dataset-") as folder:
                    if "artifacts" not in save_args and hasattr(data, "extract_pipeline_artifacts"):
                        # A KedroPipelineModel ships its artifacts (checked by sha256) with it, as modelify does.
                        save_args["artifacts"] = data.extract_pipeline_artifacts(folder)
                    info = flavor.log_model(name=self._artifact_path, python_model=data, **save_args)
            else:
                info = flavor.log_model(data, name=self._artifact_path, **self._save_args)
            logger.info("Logged model %s in MLflow run %s", info.model_uri, run_id)
            uri = info.model_uri
            if self._registered_model_name is not None:
                uri = self._register(info.model_id)
        self._model_uri = uri
        self._run_id = None

    def _pyfunc_save_args(self) -> dict[str, Any]:
        """``save_args`` with kedro, kedro-datasets and mlflow pinned unless the user chose the environment.

        Without requirements MLflow infers them by loading the model in a subprocess, which is slow and misses
        Kedro's dataset plugins; the pins are what a ``KedroPipelineModel`` needs to load.
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

    def _register(self, model_id: str) -> str:
        import mlflow
        from mlflow.exceptions import MlflowException

        from airflow_kedro_mlflow.exceptions import ModelRegistrationError
        from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name

        name = validate_registered_model_name(self._registered_model_name)
        aliases = validate_aliases([self._alias] if self._alias else [], name)
        try:
            version = mlflow.register_model(f"models:/{model_id}", name)
            for alias in aliases:
                mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
        except MlflowException as exc:
            raise ModelRegistrationError(
                f"MlflowModelDataset: could not register model {model_id} as {name!r}: {exc.message}"
            ) from exc
        return f"models:/{name}/{version.version}"

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

    def _flavor_module(self) -> Any:
        try:
            module = importlib.import_module(self._flavor)
        except ImportError as exc:
            raise DatasetError(
                f"MlflowModelDataset: flavor {self._flavor!r} cannot be imported ({exc}). Use an MLflow flavor "
                "module such as 'mlflow.pyfunc' or 'mlflow.sklearn', and install what it needs."
            ) from exc
        if not (hasattr(module, "load_model") and hasattr(module, "log_model")):
            raise DatasetError(
                f"MlflowModelDataset: {self._flavor!r} is not an MLflow flavor (it has no load_model/log_model); use "
                "e.g. 'mlflow.pyfunc' or 'mlflow.sklearn'."
            )
        return module

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

    @contextmanager
    def _run(self) -> Iterator[str]:
        """The run to log into: the active one, the ``run_id`` one (resumed), or a new one ended afterwards."""
        import mlflow

        active = mlflow.active_run()
        if active is not None and self._run_id in (None, active.info.run_id):
            yield active.info.run_id
            return
        if active is not None:
            raise DatasetError(
                f"MlflowModelDataset: run_id={self._run_id!r} differs from the active MLflow run "
                f"{active.info.run_id}; drop run_id to log into the active run, or end it first."
            )
        run = mlflow.start_run(run_id=self._run_id)
        status = "FAILED"
        try:
            yield run.info.run_id
            status = "FINISHED"
        finally:
            mlflow.end_run(status=status)
