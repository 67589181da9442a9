"""Run a Kedro training pipeline inside an MLflow run and record what the inference pipeline will need.

:func:`run_training` is what ``KedroTrainingOperator`` calls (and anyone can call from Python): it opens a Kedro
session, starts (or resumes) an MLflow run, logs the Kedro params, runs the pipeline with Kedro's run controls, and
— when the pipeline is a ``PipelineML`` — uploads every artifact its inference pipeline needs to the run, hashed, so
that a later modelify step can build the model on another machine. It returns a :class:`TrainingResult`, the XCom.

Logging: ``prepare_kedro_environment`` makes Kedro use the package's plain logging config (no handler replaced, so
Airflow's task log keeps everything); this module then logs one plain line per node start and finish.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from airflow_kedro_mlflow.exceptions import KedroProjectError, KedroRunError, MlflowRunNotFoundError
from airflow_kedro_mlflow.kedro_project import get_pipeline, open_session, prepare_kedro_environment
from airflow_kedro_mlflow.tracking import RETRY_IDENTITY_TAGS, flatten_params, get_or_create_experiment
from airflow_kedro_mlflow.training_result import ArtifactRecord, TrainingResult

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)

#: Kedro's hook marker, built from pluggy directly so this module does not import kedro before
#: :func:`prepare_kedro_environment` has chosen the logging config (same project name as ``kedro.framework.hooks``).
hook_impl = pluggy.HookimplMarker("kedro")

#: Folder of the training run's artifacts: ``runs:/<run_id>/kedro_artifacts/<name>/<file>``.
ARTIFACTS_FOLDER = "kedro_artifacts"

_MAX_PARAMS_PER_BATCH = 100
_MAX_TAG_VALUE_LENGTH = 8000
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_BUILTIN_RUNNERS = ("ParallelRunner", "SequentialRunner", "ThreadRunner")


def run_training(
    project_path: str | os.PathLike[str],
    pipeline_name: str = "training",
    *,
    tracking: TrackingConfig,
    env: str | None = None,
    conf_source: str | None = None,
    runtime_params: Mapping[str, Any] | None = None,
    experiment_name: str | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    runner: AbstractRunner | str | None = None,
    tags: Iterable[str] | str | None = None,
    node_names: Iterable[str] | str | None = None,
    from_nodes: Iterable[str] | str | None = None,
    to_nodes: Iterable[str] | str | None = None,
    load_versions: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Run ``pipeline_name`` of the Kedro project at ``project_path`` in an MLflow run; return the training XCom.

    Everything that can be checked is checked before the MLflow run starts (tracking server reachable, project,
    env, pipeline, run controls, runner), so bad input leaves nothing behind. A run that fails later is marked
    ``FAILED`` (``KILLED`` when interrupted); a new run is started per call, so every Airflow try gets its own.

    :param project_path: Kedro project root (folder of ``pyproject.toml``) as this machine sees it.
    :param pipeline_name: registered pipeline to run; a ``PipelineML`` gets its inference artifacts uploaded.
    :param tracking: the MLflow server (credentials stay in this process; see :class:`TrackingConfig`).
    :param env: Kedro env; default ``KEDRO_ENV`` or the project's default run env.
    :param conf_source: Kedro configuration source; default the project's ``conf/``.
    :param runtime_params: extra Kedro params (override ``parameters.yml``, feed ``${runtime_params:...}``).
    :param experiment_name: MLflow experiment, created if missing; default: the project's package name.
    :param run_name: MLflow run name; default: the pipeline name.
    :param run_id: resume this existing MLflow run instead of starting one.
    :param mlflow_tags: extra MLflow run tags (e.g. ``airflow.dag_id``); Kedro's ``tags`` are a node filter.
    :param runner: a Kedro runner instance, or a name (``"SequentialRunner"``, ``"ThreadRunner"``,
        ``"ParallelRunner"``, or a dotted path in the project package / ``RUNNER_MODULE_ALLOWLIST``).
    :param tags: run only nodes with any of these Kedro tags (a comma-separated string is split).
    :param node_names: run only these nodes.
    :param from_nodes: run from these nodes on.
    :param to_nodes: run up to these nodes.
    :param load_versions: ``{dataset: version}`` to load instead of the latest version.
    :raises MlflowConnectionError: the tracking server is unreachable or refuses the credentials.
    :raises KedroProjectError: not a Kedro project, unknown env/pipeline/node/runner.
    :raises MlflowRunNotFoundError: ``run_id`` does not exist on the tracking server.
    :raises KedroRunError: a node failed (named; the original error is the ``__cause__``).
    """
    prepare_kedro_environment()
    filters = {
        "tags": _names("tags", tags),
        "node_names": _names("node_names", node_names),
        "from_nodes": _names("from_nodes", from_nodes),
        "to_nodes": _names("to_nodes", to_nodes),
    }
    if load_versions is not None and not isinstance(load_versions, Mapping):
        raise KedroProjectError(f"load_versions must be a mapping of dataset name to version, got {load_versions!r}.")
    import mlflow

    with tracking.activate(), _hook_logging_disabled():
        tracking.check_connection()
        with open_session(project_path, env=env, conf_source=conf_source, runtime_params=runtime_params) as session:
            project_root = Path(session.store["project_path"])
            package_name = _package_name()
            registered = get_pipeline(session, pipeline_name)
            _check_filters(registered, pipeline_name, filters)
            if _is_pipeline_ml(registered):
                _check_artifacts_declared(registered, session)
            runner_obj = _resolve_runner(runner, package_name)
            resolved_env = _effective_env(session, env, conf_source)
            run, started = _start_run(
                tracking,
                run_id=run_id,
                experiment_name=experiment_name or package_name,
                run_name=run_name or pipeline_name,
                tags=_run_tags(mlflow_tags, resolved_env, pipeline_name, session),
            )
            active_run_id = run.info.run_id
            logger.info(
                "Training pipeline %r of %s in MLflow run %s (experiment %s) at %s",
                pipeline_name,
                project_root,
                active_run_id,
                run.info.experiment_id,
                tracking.public_uri,
            )
            observer = _RunObserver(tracking, active_run_id, input_name=getattr(registered, "input_name", None))
            status = "FAILED"  # also for a killed task (Airflow raises a BaseException into it)
            try:
                _run_pipeline(
                    session,
                    observer,
                    pipeline_name=pipeline_name,
                    runner=runner_obj,
                    filters=filters,
                    load_versions=load_versions,
                )
                artifacts, signature = {}, None
                if _is_pipeline_ml(registered):
                    artifacts, signature = _record_artifacts(registered, observer, session, tracking, active_run_id)
                else:
                    logger.info("Pipeline %r is not a PipelineML: no inference artifacts to record.", pipeline_name)
                status = "FINISHED"
            finally:
                if started:
                    mlflow.end_run(status=status)
            return TrainingResult(
                run_id=active_run_id,
                experiment_id=run.info.experiment_id,
                tracking_uri=tracking.public_uri,
                project_path=str(project_root),
                env=resolved_env,
                conf_source=_resolved_conf_source(project_root, conf_source),
                runtime_params=dict(runtime_params or {}),
                pipeline_name=pipeline_name,
                input_name=registered.input_name if _is_pipeline_ml(registered) else None,
                artifacts=artifacts,
                signature=signature,
                run_url=tracking.run_url(run.info.experiment_id, active_run_id),
            )


class _RunObserver:
    """Kedro hooks for one training run: node log lines, the run's catalog, what was saved, the input data.

    Registered on the session only (not in the project's settings), so ``kedro run`` is unaffected.
    """

    def __init__(self, tracking: TrackingConfig, run_id: str, input_name: str | None) -> None:
        self.tracking = tracking
        self.run_id = run_id
        self.input_name = input_name
        self.catalog: CatalogProtocol | None = None
        self.saved: set[str] = set()
        self.input_data: Any = None
        self.failed_node: str | None = None
        self.node_error: BaseException | None = None
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Keep the run's catalog (its save version pins the artifacts) and log the Kedro params to MLflow."""
        self.catalog = catalog
        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        _log_params(self.tracking, self.run_id, parameters)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Log one line as a node starts."""
        with self._lock:
            self._started[node.name] = time.perf_counter()
        logger.info("Node %s started", node.name)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """Log one line, with the duration, as a node finishes."""
        logger.info("Node %s finished in %.2fs", node.name, self._elapsed(node.name))

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        """Remember the first failing node and its original error, for :class:`KedroRunError`."""
        logger.error(
            "Node %s failed after %.2fs: %s: %s", node.name, self._elapsed(node.name), type(error).__name__, error
        )
        with self._lock:
            if self.failed_node is None:
                self.failed_node, self.node_error = node.name, error

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Note datasets this run wrote (their versions get pinned) and keep the training input data."""
        with self._lock:
            self.saved.add(dataset_name)
        self._keep_input(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        """Keep the training input data (``input_name``) for the model signature."""
        self._keep_input(dataset_name, data)

    def _keep_input(self, dataset_name: str, data: Any) -> None:
        if dataset_name == self.input_name and self.input_data is None:
            self.input_data = data

    def _elapsed(self, name: str) -> float:
        with self._lock:
            started = self._started.pop(name, None)
        return 0.0 if started is None else time.perf_counter() - started


def _run_pipeline(
    session: KedroSession,
    observer: _RunObserver,
    *,
    pipeline_name: str,
    runner: AbstractRunner,
    filters: Mapping[str, list[str] | None],
    load_versions: Mapping[str, str] | None,
) -> None:
    """Run the session; turn a node failure into :class:`KedroRunError` naming the node."""
    from airflow_kedro_mlflow.kedro_project import register_session_hooks

    register_session_hooks(session, observer)
    try:
        session.run(
            pipeline_names=[pipeline_name],
            runner=runner,
            load_versions=dict(load_versions) if load_versions else None,
            **filters,
        )
    except Exception as exc:
        if observer.failed_node is not None:
            error = observer.node_error or exc
            raise KedroRunError(
                f"Kedro node {observer.failed_node!r} of pipeline {pipeline_name!r} failed: "
                f"{type(error).__name__}: {error}. MLflow run {observer.run_id} is marked FAILED. Fix the node "
                "(its original error and traceback are chained below) and run the training again."
            ) from error
        raise KedroRunError(
            f"Kedro pipeline {pipeline_name!r} failed outside any node: {type(exc).__name__}: {exc}. MLflow run "
            f"{observer.run_id} is marked FAILED. Check the catalog and the run controls, then run it again."
        ) from exc


def _record_artifacts(
    pipeline_ml: Any,
    observer: _RunObserver,
    session: KedroSession,
    tracking: TrackingConfig,
    run_id: str,
) -> tuple[dict[str, ArtifactRecord], dict[str, Any] | None]:
    """Upload every inference artifact to the run under ``kedro_artifacts/<name>/`` and hash it; infer the signature.

    Versioned artifacts written by this run are pinned to its save version (the session id) first: "latest version"
    could otherwise be another run's file, written to the same folder while this one was running.
    """
    from airflow_kedro_mlflow.model import KedroPipelineModel, infer_model_signature

    catalog = observer.catalog
    if catalog is None:  # before_pipeline_run always runs first; a missing catalog means Kedro changed.
        raise KedroRunError(f"Kedro did not hand the run's catalog to the hooks of pipeline {pipeline_ml!r}.")
    model = KedroPipelineModel(pipeline_ml, catalog, input_name=pipeline_ml.input_name)
    _pin_versions(catalog, model.artifact_names, observer.saved, session.session_id)
    with tempfile.TemporaryDirectory(prefix="airflow-kedro-mlflow-params-") as params_folder:
        # params:* files live only until they are uploaded: modelify downloads them (they are tiny), and a
        # long-lived worker does not collect one folder per training run.
        paths = model.extract_pipeline_artifacts(parameters_saving_folder=params_folder)
        records = _upload_artifacts(paths, model.artifact_sha256, catalog, tracking, run_id)
    input_data = observer.input_data
    if input_data is None and pipeline_ml.input_name in catalog and catalog.exists(pipeline_ml.input_name):
        input_data = catalog.load(pipeline_ml.input_name)
    if input_data is None:
        logger.warning(
            "No signature recorded: the training run neither loaded nor saved %r (the model's input) and the "
            "catalog cannot load it. Persist it in catalog.yml to get a signature inferred from the training data.",
            pipeline_ml.input_name,
        )
        return records, None
    signature = infer_model_signature(input_data, pipeline_ml.inference, catalog)
    return records, signature.to_dict()


def _upload_artifacts(
    paths: Mapping[str, str],
    hashes: Mapping[str, str],
    catalog: Any,
    tracking: TrackingConfig,
    run_id: str,
) -> dict[str, ArtifactRecord]:
    """Upload each artifact to ``kedro_artifacts/<name>/`` of the run; return its path, ``runs:/`` URI and sha256."""
    from airflow_kedro_mlflow.model import sha256_path

    client = tracking.client()
    records: dict[str, ArtifactRecord] = {}
    used_folders: dict[str, str] = {}
    for name in sorted(paths):
        path = Path(paths[name])
        folder = _artifact_folder(name)
        if used_folders.setdefault(folder, name) != name:
            raise KedroRunError(
                f"Artifacts {used_folders[folder]!r} and {name!r} would both be uploaded to {ARTIFACTS_FOLDER}/"
                f"{folder}/. Rename one of these catalog entries."
            )
        sha256 = hashes.get(name) or sha256_path(path)
        artifact_dir = f"{ARTIFACTS_FOLDER}/{folder}"
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=f"{artifact_dir}/{path.name}")
        else:
            client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
        records[name] = ArtifactRecord(path=str(path), uri=f"runs:/{run_id}/{artifact_dir}/{path.name}", sha256=sha256)
        _warn_if_unversioned(name, path, catalog)
        logger.info("Artifact %s: %s (sha256 %s) uploaded to %s", name, path, sha256[:12], records[name].uri)
    return records


def _check_artifacts_declared(pipeline_ml: Any, session: KedroSession) -> None:
    """Fail before training when an inference artifact could never be shipped (undeclared, or a MemoryDataset)."""
    from airflow_kedro_mlflow.model import KedroPipelineModel

    KedroPipelineModel(pipeline_ml, session.load_context().catalog, input_name=pipeline_ml.input_name)


def _pin_versions(catalog: Any, names: Iterable[str], saved: set[str], save_version: str) -> None:
    """Make versioned artifacts this run saved load the version this run wrote (public ``DataCatalog.get``)."""
    from kedro.io import AbstractVersionedDataset, Version

    catalog_logger = logging.getLogger("kedro.io.data_catalog")
    for name in names:
        if name not in saved:
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, AbstractVersionedDataset) and _is_versioned(name, catalog):
            pinned = catalog.get(name, version=Version(save_version, save_version))
            level = catalog_logger.level
            catalog_logger.setLevel(logging.ERROR)  # Kedro warns "Replacing dataset": intended here
            try:
                catalog[name] = pinned
            finally:
                catalog_logger.setLevel(level)


def _is_versioned(name: str, catalog: Any) -> bool:
    from airflow_kedro_mlflow.model.artifacts import artifact_dataset_config

    return bool(artifact_dataset_config(name, catalog).get("versioned"))


def _warn_if_unversioned(name: str, path: Path, catalog: Any) -> None:
    if name.startswith("params:") or _is_versioned(name, catalog):
        return
    logger.warning(
        "Artifact %r (%s) is not versioned: concurrent training runs writing the same path may overwrite it. Set "
        "`versioned: true` for it in catalog.yml (the sha256 recorded here still stops a mixed-up model).",
        name,
        path,
    )


def _artifact_folder(name: str) -> str:
    """A portable folder name for a dataset name (``params:threshold`` -> ``params_threshold``)."""
    return _UNSAFE_PATH_CHARS.sub("_", name).strip("_") or "artifact"


def _start_run(
    tracking: TrackingConfig, *, run_id: str | None, experiment_name: str, run_name: str, tags: dict[str, str]
) -> tuple[Any, bool]:
    """Start a new MLflow run (or resume ``run_id``); return it and whether this call must end it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    active = mlflow.active_run()
    if active is not None:
        if run_id is not None and active.info.run_id == run_id:
            mlflow.set_tags(tags)
            return active, False
        raise KedroRunError(
            f"MLflow run {active.info.run_id} is already active in this process. End it first, or pass "
            f"run_id={active.info.run_id!r} to train inside it."
        )
    client = tracking.client()
    if run_id is not None:
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise MlflowRunNotFoundError(
                    f"MLflow run {run_id!r} does not exist on {tracking.public_uri}. Pass the id of an existing run "
                    "(see the MLflow UI), or leave run_id unset to start a new run."
                ) from exc
            raise tracking.connection_error(exc) from exc
        return mlflow.start_run(run_id=run_id, tags=tags), True
    experiment_id = get_or_create_experiment(client, experiment_name)
    _fail_superseded_runs(client, experiment_id, tags)
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags), True


def _fail_superseded_runs(client: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Mark FAILED the runs an earlier, killed try of this same task left RUNNING.

    A worker killed with SIGKILL (OOM, node lost) cannot end its MLflow run; the retry is the first code that runs
    for that task again, and only one try of a task runs at a time, so any RUNNING run with the same identity
    belongs to a dead try.
    """
    values = [str(tags.get(key) or "") for key in RETRY_IDENTITY_TAGS]
    if not all(values) or any("'" in value for value in values):  # a quote cannot be put in MLflow's filter
        return
    conditions = [f"tags.`{key}` = '{value}'" for key, value in zip(RETRY_IDENTITY_TAGS, values, strict=True)]
    conditions.append("attributes.status = 'RUNNING'")
    for stale in client.search_runs([experiment_id], filter_string=" and ".join(conditions), max_results=100):
        client.set_tag(stale.info.run_id, "airflow_kedro_mlflow.failed_reason", "superseded by a retry of this task")
        client.set_terminated(stale.info.run_id, status="FAILED")
        logger.warning(
            "MLflow run %s of an earlier try of this task was still RUNNING (its worker died): marked FAILED.",
            stale.info.run_id,
        )


def _run_tags(
    mlflow_tags: Mapping[str, Any] | None, env: str | None, pipeline_name: str, session: KedroSession
) -> dict[str, str]:
    tags: dict[str, Any] = {"kedro.pipeline_name": pipeline_name, "kedro.session_id": session.session_id}
    if env:
        tags["kedro.env"] = env
    git = session.store.get("git") or {}
    if git.get("commit_sha"):
        tags["git.sha"] = git["commit_sha"]
        tags["git.dirty"] = str(bool(git.get("dirty"))).lower()
    tags.update(mlflow_tags or {})
    return {str(key): str(value)[:_MAX_TAG_VALUE_LENGTH] for key, value in tags.items() if value is not None}


def _log_params(tracking: TrackingConfig, run_id: str, parameters: Mapping[str, Any]) -> None:
    """Log Kedro params flattened (``model.C``), values cut to MLflow's limit, in batches of 100.

    A resumed run may already hold some: MLflow refuses to change a param, so those with another value are kept as
    they are, with a warning.
    """
    from mlflow.entities import Param

    flat = flatten_params(parameters)
    client = tracking.client()
    existing = client.get_run(run_id).data.params
    changed = sorted(key for key, value in flat.items() if key in existing and existing[key] != value)
    if changed:
        logger.warning(
            "MLflow run %s already has params %s with other values; keeping the logged ones.", run_id, changed
        )
    todo = [Param(key, value) for key, value in sorted(flat.items()) if key not in existing]
    for start in range(0, len(todo), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=todo[start : start + _MAX_PARAMS_PER_BATCH])


def _names(argument: str, value: Iterable[str] | str | None) -> list[str] | None:
    """Normalise a run-control argument: a comma-separated string (as templated in a DAG) or a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
    else:
        names = [str(part) for part in value]
    if not names:
        return None
    return names


def _check_filters(pipeline: Pipeline, pipeline_name: str, filters: Mapping[str, list[str] | None]) -> None:
    """Apply the run controls once before anything starts, so unknown nodes fail without an MLflow run.

    A ``PipelineML`` raises its own ``PipelineMLError`` for a filter that would drop an artifact the inference needs.
    """
    if not any(filters.values()):
        return
    from airflow_kedro_mlflow.exceptions import PipelineMLError

    try:
        pipeline.filter(**filters)
    except PipelineMLError:
        raise
    except ValueError as exc:
        raise KedroProjectError(
            f"Run controls {_shown(filters)} do not apply to pipeline {pipeline_name!r}: {exc}"
        ) from exc


def _shown(filters: Mapping[str, list[str] | None]) -> dict[str, list[str]]:
    return {key: value for key, value in filters.items() if value}


def _resolve_runner(runner: AbstractRunner | str | type | None, package_name: str) -> AbstractRunner:
    """Return a runner instance from an instance, a class, a built-in name or an allowed dotted path."""
    from kedro.framework.project import settings
    from kedro.runner import AbstractRunner, SequentialRunner
    from kedro.utils import load_obj

    if runner is None:
        return SequentialRunner()
    if isinstance(runner, AbstractRunner):
        return runner
    if isinstance(runner, type) and issubclass(runner, AbstractRunner):
        return runner()
    if not isinstance(runner, str) or not runner.strip():
        raise KedroProjectError(f"runner must be a Kedro runner or its name, got {runner!r}.")
    name = runner.strip()
    allowed = ("kedro.runner", package_name, *tuple(settings.RUNNER_MODULE_ALLOWLIST))
    module = name.rpartition(".")[0]
    if module and not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        raise KedroProjectError(
            f"runner {name!r} is not in an allowed module {sorted(allowed)}. Use one of {list(_BUILTIN_RUNNERS)}, "
            "or add its module to RUNNER_MODULE_ALLOWLIST in the project's settings.py."
        )
    try:
        runner_class = load_obj(name, "kedro.runner")
    except (AttributeError, ImportError, ValueError) as exc:
        raise KedroProjectError(
            f"Unknown Kedro runner {name!r}: {exc}. Use one of {list(_BUILTIN_RUNNERS)} or a dotted path to a "
            "runner class."
        ) from exc
    if not (isinstance(runner_class, type) and issubclass(runner_class, AbstractRunner)):
        raise KedroProjectError(f"{name!r} is not a Kedro runner class (a kedro.runner.AbstractRunner subclass).")
    return runner_class()


def _effective_env(session: KedroSession, env: str | None, conf_source: str | None) -> str | None:
    """The env the session really uses (explicit, ``KEDRO_ENV``, else the project's default run env if it exists)."""
    from kedro.framework.project import settings

    chosen = session.store.get("env") or env
    if chosen:
        return str(chosen)
    default = dict(settings.CONFIG_LOADER_ARGS).get("default_run_env")
    project_root = Path(session.store["project_path"])
    conf_dir = Path(_resolved_conf_source(project_root, conf_source) or project_root / settings.CONF_SOURCE)
    return default if default and (conf_dir / default).is_dir() else None


def _resolved_conf_source(project_root: Path, conf_source: str | None) -> str | None:
    if conf_source is None or "://" in conf_source:
        return conf_source
    path = Path(conf_source).expanduser()
    return str((path if path.is_absolute() else project_root / path).resolve())


def _package_name() -> str:
    import kedro.framework.project as kedro_project

    return str(kedro_project.PACKAGE_NAME)


def _is_pipeline_ml(pipeline: Any) -> bool:
    from airflow_kedro_mlflow.pipeline import is_pipeline_ml

    return is_pipeline_ml(pipeline)


@contextmanager
def _hook_logging_disabled() -> Iterator[None]:
    """Turn our Kedro hook's model logging off while training runs: only modelify logs models in a DAG."""
    from airflow_kedro_mlflow.kedro_hooks import DISABLE_ENV_VAR

    previous = os.environ.get(DISABLE_ENV_VAR)
    os.environ[DISABLE_ENV_VAR] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DISABLE_ENV_VAR, None)
        else:
            os.environ[DISABLE_ENV_VAR] = previous
