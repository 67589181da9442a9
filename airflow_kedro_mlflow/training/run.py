"""Run a Kedro training pipeline inside an MLflow run and record what the inference pipeline will need.

:func:`run_training` is what ``KedroTrainingOperator`` calls (and anyone can call from Python): it opens a Kedro
session, starts (or joins) an MLflow run, logs the Kedro params, runs the pipeline with Kedro's run controls, and
— when the pipeline is a ``PipelineML`` — uploads every artifact its inference pipeline needs to the run, hashed, so
that a later modelify step can build the model on another machine. It returns a :class:`TrainingResult`, the XCom.

Logging: ``prepare_kedro_environment`` makes Kedro use the package's plain logging config (no handler replaced, so
Airflow's task log keeps everything); the run observer then logs one plain line per node start and finish.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroProjectError, KedroRunError
from airflow_kedro_mlflow.kedro_project import (
    HOOK_DISABLED_ENV_VAR,
    KedroRunSpec,
    effective_env,
    get_pipeline,
    prepare_kedro_environment,
    resolved_conf_source,
)
from airflow_kedro_mlflow.tracking.params import ParamsOptions, project_params_options
from airflow_kedro_mlflow.tracking.runs import fail_superseded_runs, get_or_create_experiment, run_scope
from airflow_kedro_mlflow.tracking.sweeps import PARENT_RUN_ID_TAG, sweep_parent_run, sweep_trial
from airflow_kedro_mlflow.tracking.tags import git_tags, lineage_tags
from airflow_kedro_mlflow.training.artifacts import check_artifacts_declared, record_artifacts
from airflow_kedro_mlflow.training.controls import check_filters, names, resolve_runner
from airflow_kedro_mlflow.training.lineage import LineageRecorder
from airflow_kedro_mlflow.training.observer import RunObserver
from airflow_kedro_mlflow.training_result import ArtifactRecord, TrainingResult

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession
    from kedro.runner import AbstractRunner
    from mlflow.entities import Run

    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)


def run_training(
    project_path: str | os.PathLike[str] | KedroRunSpec,
    pipeline_name: str | None = None,
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
    on_run_start: Callable[[str, str | None], None] | None = None,
    params_options: ParamsOptions | Mapping[str, Any] | None = None,
    parent_run_tags: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Run ``pipeline_name`` of the Kedro project at ``project_path`` in an MLflow run; return the training XCom.

    Everything that can be checked is checked before the MLflow run starts (tracking server reachable, project,
    env, pipeline, run controls, runner), so bad input leaves nothing behind. A run that fails later is marked
    ``FAILED`` (a killed task too); a new run is started per call, so every Airflow try gets its own, and a retry
    marks FAILED the run a killed earlier try of the same task (same map index) left RUNNING.

    :param project_path: Kedro project root (folder of ``pyproject.toml``) as this machine sees it, or a whole
        :class:`~airflow_kedro_mlflow.kedro_project.KedroRunSpec` (then ``pipeline_name``, ``env``,
        ``conf_source`` and ``runtime_params`` given here override its values).
    :param pipeline_name: registered pipeline to run; a ``PipelineML`` gets its inference artifacts uploaded.
    :param tracking: the MLflow server (credentials stay in this process; see :class:`TrackingConfig`).
    :param env: Kedro env; default ``KEDRO_ENV`` or the project's default run env.
    :param conf_source: Kedro configuration source; default the project's ``conf/``.
    :param runtime_params: extra Kedro params (override ``parameters.yml``, feed ``${runtime_params:...}``).
    :param experiment_name: MLflow experiment, created if missing; default: the project's package name.
    :param run_name: MLflow run name; default: the pipeline name.
    :param run_id: train inside this existing MLflow run (several tasks sharing one run) instead of a new one.
    :param mlflow_tags: extra MLflow run tags (e.g. ``airflow.dag_id``); Kedro's ``tags`` are a node filter.
    :param runner: a Kedro runner instance, or a name (``"SequentialRunner"``, ``"ThreadRunner"``, or a dotted path
        in the project package / ``RUNNER_MODULE_ALLOWLIST``). Nodes run by ``ThreadRunner`` see the training run as
        their active MLflow run; ``ParallelRunner`` is refused (its worker processes would lose node metrics).
    :param tags: run only nodes with any of these Kedro tags (a comma-separated string is split).
    :param node_names: run only these nodes.
    :param from_nodes: run from these nodes on.
    :param to_nodes: run up to these nodes.
    :param load_versions: ``{dataset: version}`` to load instead of the latest version.
    :param on_run_start: called with ``(run_id, run_url)`` as soon as the MLflow run exists, before the pipeline
        runs, so a caller can link to a run that later fails (the operator pushes its extra link there).
    :param params_options: how Kedro params are logged (``{"shape": "kedro_mlflow", "long_params_strategy": "tag"}``),
        over the project's ``conf/<env>/airflow_kedro_mlflow.yml``; see :mod:`airflow_kedro_mlflow.tracking.params`.
    :param parent_run_tags: make the new run one trial of a sweep: a nested run of the one parent run carrying these
        tags (the sweep's identity, :data:`~airflow_kedro_mlflow.tracking.sweeps.SWEEP_IDENTITY_TAGS`), created when
        missing and settled (RUNNING, FINISHED or FAILED) after this run ends. Ignored with ``run_id``.
    :raises MlflowConnectionError: the tracking server refuses the credentials.
    :raises MlflowServerUnavailableError: the tracking server cannot be reached.
    :raises KedroProjectError: not a Kedro project, unknown env/pipeline/node/runner, or ``ParallelRunner``.
    :raises MlflowRunNotFoundError: ``run_id`` does not exist on the tracking server.
    :raises KedroRunError: a node failed (named; the original error is the ``__cause__``).
    """
    prepare_kedro_environment()
    overrides = {
        "pipeline_name": pipeline_name,
        "env": env,
        "conf_source": conf_source,
        "runtime_params": runtime_params,
    }
    if isinstance(project_path, KedroRunSpec):
        spec = project_path.with_overrides(**overrides)
    else:
        spec = KedroRunSpec(os.fspath(project_path), "training").with_overrides(**overrides)
    filters = {
        "tags": names("tags", tags),
        "node_names": names("node_names", node_names),
        "from_nodes": names("from_nodes", from_nodes),
        "to_nodes": names("to_nodes", to_nodes),
    }
    if load_versions is not None and not isinstance(load_versions, Mapping):
        raise KedroProjectError(f"load_versions must be a mapping of dataset name to version, got {load_versions!r}.")

    with tracking.activate(), _hook_logging_disabled(), ThreadPoolExecutor(1, thread_name_prefix="akm-git") as pool:
        tracking.check_connection()
        # `git status` reads the metadata of every tracked file, which takes a while in a large repository: it runs
        # in a subprocess while Kedro opens the session and loads the pipelines.
        git = pool.submit(git_tags, spec.project_path)
        with spec.session() as session:
            import kedro.framework.project as kedro_project

            from airflow_kedro_mlflow.pipeline import is_pipeline_ml  # imports kedro: after prepare_kedro_environment

            project_root = Path(session.store["project_path"])
            package_name = str(kedro_project.PACKAGE_NAME)
            registered = get_pipeline(session, spec.pipeline_name)
            check_filters(registered, spec.pipeline_name, filters)
            pipeline_ml = registered if is_pipeline_ml(registered) else None
            input_name: str | None = getattr(pipeline_ml, "input_name", None)
            context = session.load_context()  # one context for every check; session.run() builds its own
            if pipeline_ml is not None:
                check_artifacts_declared(pipeline_ml, context.catalog)
            runner_obj = resolve_runner(runner, package_name)
            resolved_env = effective_env(context)
            params = ParamsOptions.resolve(params_options, project_params_options(context.config_loader))
            run_tags = lineage_tags({**git.result(), **dict(mlflow_tags or {})}, env=resolved_env,
                                    pipeline_name=spec.pipeline_name, session_id=session.session_id)  # fmt: skip
            client = tracking.client()
            experiment_id = None
            parent = None
            if run_id is None:
                experiment_id = get_or_create_experiment(client, experiment_name or package_name)
                fail_superseded_runs(client, experiment_id, run_tags)
                if parent_run_tags:
                    parent = sweep_parent_run(client, experiment_id, parent_run_tags, tags=run_tags,
                                              run_name=f"{run_name or spec.pipeline_name} sweep")  # fmt: skip
                    run_tags[PARENT_RUN_ID_TAG] = parent.info.run_id
            scope = run_scope(client, run_id=run_id, experiment_id=experiment_id,
                              run_name=run_name or spec.pipeline_name, tags=run_tags)  # fmt: skip
            with sweep_trial(client, parent), scope as run:
                active_run_id = run.info.run_id
                run_url = tracking.run_url(run.info.experiment_id, active_run_id)
                logger.info(
                    "Training pipeline %r of %s in MLflow run %s (experiment %s) at %s",
                    spec.pipeline_name,
                    project_root,
                    active_run_id,
                    run.info.experiment_id,
                    tracking.public_uri,
                )
                if on_run_start is not None:
                    on_run_start(active_run_id, run_url)
                observer = RunObserver(tracking, _active_run(), input_name=input_name, params_options=params)
                lineage = LineageRecorder.register(session, load_versions)
                _run_pipeline(session, observer, pipeline_name=spec.pipeline_name, runner=runner_obj,
                              filters=filters, load_versions=load_versions)  # fmt: skip
                artifacts: dict[str, ArtifactRecord] = {}
                signature: dict[str, Any] | None = None
                if pipeline_ml is not None:
                    artifacts, signature = record_artifacts(pipeline_ml, observer, session, tracking, active_run_id)
                else:
                    logger.info(
                        "Pipeline %r is not a PipelineML: no inference artifacts to record.", spec.pipeline_name
                    )
            return TrainingResult(
                run_id=active_run_id,
                experiment_id=run.info.experiment_id,
                tracking_uri=tracking.public_uri,
                project_path=str(project_root),
                env=resolved_env,
                conf_source=resolved_conf_source(project_root, spec.conf_source),
                runtime_params=dict(spec.runtime_params),
                pipeline_name=spec.pipeline_name,
                input_name=input_name,
                artifacts=artifacts,
                signature=signature,
                run_url=run_url,
                datasets=lineage.datasets(),
            )


def _run_pipeline(
    session: KedroSession,
    observer: RunObserver,
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
            tags=filters["tags"],
            node_names=filters["node_names"],
            from_nodes=filters["from_nodes"],
            to_nodes=filters["to_nodes"],
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


def _active_run() -> Run:
    """The run :func:`run_scope` made active in this thread: the very object nodes in other threads will share."""
    import mlflow

    run = mlflow.active_run()
    assert run is not None  # inside run_scope
    return run


@contextmanager
def _hook_logging_disabled() -> Iterator[None]:
    """Turn our Kedro hook's model logging off while training runs: only modelify logs models in a DAG."""
    previous = os.environ.get(HOOK_DISABLED_ENV_VAR)
    os.environ[HOOK_DISABLED_ENV_VAR] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HOOK_DISABLED_ENV_VAR, None)
        else:
            os.environ[HOOK_DISABLED_ENV_VAR] = previous
