"""A Kedro hook that logs a ``PipelineML``'s inference pipeline as an MLflow model after ``kedro run``.

Opt-in, in the project's ``settings.py``::

    from airflow_kedro_mlflow.kedro_hooks import PipelineMLHook

    HOOKS = (PipelineMLHook(tracking_uri="http://127.0.0.1:5000", registered_model_name="kedro_classifier"),)

Then ``kedro run --pipelines training`` trains inside an MLflow run (metrics logged by nodes land in it) and logs the
inference pipeline, with the artifacts training just wrote, through the same build-and-log function as the
``modelify`` CLI and the Airflow operator: data scientists get locally the model a DAG would produce.

Kedro 1.x runs ``Pipeline([]) + pipelines[name]`` (then filters it), so the object a hook receives is a plain
``Pipeline`` even when ``name`` is registered as a ``PipelineML``. This hook therefore looks the ``PipelineML`` up by
name in the pipeline registry (``run_params["pipeline_names"]``) and logs it only when the run covered every node of
its training pipeline (a partial run, e.g. ``--to-nodes``, did not produce fresh artifacts).

In an Airflow DAG only the modelify task logs models: the training operator sets
``AIRFLOW_KEDRO_MLFLOW_HOOK_DISABLED=true`` while it runs, which turns this hook off entirely.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

from airflow_kedro_mlflow.exceptions import MlflowConnectionError
from airflow_kedro_mlflow.kedro_project import HOOK_DISABLED_ENV_VAR, effective_env
from airflow_kedro_mlflow.pipeline import is_pipeline_ml
from airflow_kedro_mlflow.tracking import TrackingConfig, get_or_create_experiment
from airflow_kedro_mlflow.tracking.params import ParamsOptions, log_params, project_params_options
from airflow_kedro_mlflow.tracking.runs import ThreadSharedRun, run_scope
from airflow_kedro_mlflow.tracking.tags import lineage_tags
from airflow_kedro_mlflow.training.observer import bounded_sample

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

    from airflow_kedro_mlflow.modelify import ModelifyResult
    from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineMLLike

logger = logging.getLogger(__name__)

DISABLE_ENV_VAR = HOOK_DISABLED_ENV_VAR
"""Set to ``true`` (or 1/yes) to turn the hook off for a process, e.g. while the Airflow training operator runs."""

_TRUE = {"1", "true", "yes", "on"}


def hook_disabled() -> bool:
    """True when :data:`DISABLE_ENV_VAR` asks to switch the hook off."""
    return os.environ.get(DISABLE_ENV_VAR, "").strip().lower() in _TRUE


class PipelineMLHook:
    """Log (and optionally register) the inference model after ``kedro run`` of a pipeline registered as a PipelineML.

    :param tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI``. One of them is required: MLflow's
        implicit ``./mlflow.db`` is never used.
    :param registry_uri: MLflow registry URI; default: the tracking URI.
    :param experiment_name: experiment of the run the hook starts; default ``MLFLOW_EXPERIMENT_NAME``, else the
        project's package name.
    :param registered_model_name: register a version of this model after logging; None logs only (the
        PipelineML's ``log_model_kwargs["registered_model_name"]`` is used when set).
    :param aliases: aliases moved onto the new version (needs a registered model name).
    :param run_name: name of the run the hook starts; default: the pipeline name.
    :param log_model_kwargs: ``mlflow.pyfunc.log_model`` arguments, on top of the PipelineML's own.
    :param log_params: log the run's Kedro params as MLflow params of the run it starts (the same set the training
        operator logs for the project: see :mod:`airflow_kedro_mlflow.tracking.params`).
    :param params_options: how params are logged, e.g. ``{"shape": "kedro_mlflow", "long_params_strategy": "tag"}``;
        on top of the project's ``conf/<env>/airflow_kedro_mlflow.yml`` (``params:``), which the training operator
        reads too — put it there so both log the same params.
    :param enabled: False turns the hook off (so does :data:`DISABLE_ENV_VAR`).
    """

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        experiment_name: str | None = None,
        registered_model_name: str | None = None,
        aliases: Sequence[str] = (),
        run_name: str | None = None,
        log_model_kwargs: Mapping[str, Any] | None = None,
        log_params: bool = True,
        params_options: ParamsOptions | Mapping[str, Any] | None = None,
        enabled: bool = True,
    ) -> None:
        from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name

        if registered_model_name is not None:
            validate_registered_model_name(registered_model_name)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.registered_model_name = registered_model_name
        self.aliases = validate_aliases(aliases, registered_model_name) if aliases else []
        self.run_name = run_name
        self.log_model_kwargs = dict(log_model_kwargs or {})
        self.log_params = log_params
        self.params_options = params_options
        ParamsOptions.resolve(params_options)  # a wrong option fails in settings.py, not after training
        self.enabled = enabled
        self.last_result: ModelifyResult | None = None
        self._env: str | None = None
        self._project_params_options: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._pipeline_ml: PipelineMLLike | None = None
        self._pipeline_name: str | None = None
        self._input_data: Any = None
        self._tracking: TrackingConfig | None = None
        self._stack: ExitStack | None = None
        self._threads: ThreadSharedRun | None = None
        self._owns_run = False

    def tracking_config(self) -> TrackingConfig:
        """The MLflow configuration this hook logs to (constructor arguments, else ``MLFLOW_*`` variables)."""
        if not (self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
            raise MlflowConnectionError(
                "PipelineMLHook has no MLflow tracking server: pass tracking_uri to PipelineMLHook(...) in "
                "settings.py or set MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000). MLflow's implicit "
                "./mlflow.db is not used."
            )
        # from_env keeps the MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN and HTTP settings the user exported.
        return TrackingConfig.from_env(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Remember the env Kedro really reads (``run_params["env"]`` is None when the default ``local`` is used),
        and the project's params options (``airflow_kedro_mlflow.yml``)."""
        self._env = effective_env(context)
        if self.enabled and self.log_params and not hook_disabled():
            self._project_params_options = project_params_options(context.config_loader)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Find the PipelineML the run trains and start (or join) the MLflow run it is logged into."""
        self._reset()
        if not self.enabled or hook_disabled():
            return
        found = self._find_pipeline_ml(run_params, pipeline)
        if found is None:
            return
        self._pipeline_name, self._pipeline_ml = found
        import mlflow

        self._tracking = self.tracking_config()
        self._stack = ExitStack()
        try:
            self._stack.enter_context(self._tracking.activate())
            client = self._tracking.client()
            self._owns_run = mlflow.active_run() is None
            tags = lineage_tags(None, env=self._run_env(run_params), pipeline_name=self._pipeline_name,
                                session_id=str(run_params.get("run_id")))  # fmt: skip
            run = self._stack.enter_context(
                run_scope(
                    client,
                    experiment_id=None if not self._owns_run else self._experiment_id(self._tracking),
                    run_name=self.run_name or self._pipeline_name,
                    tags=tags,
                )
            )
            self._threads = ThreadSharedRun(run)
            if self.log_params and self._owns_run:
                parameters = catalog.load("parameters") if "parameters" in catalog else {}
                options = ParamsOptions.resolve(self.params_options, self._project_params_options)
                log_params(client, run.info.run_id, parameters, options=options, inputs=pipeline.inputs())
        except BaseException as exc:
            self._finish(exc)
            raise

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        """Keep a bounded sample of the training input data (the PipelineML's ``input_name``) for the signature."""
        if self._pipeline_ml is not None and self._input_data is None and dataset_name == self._pipeline_ml.input_name:
            self._input_data = bounded_sample(data)

    # The run is shared with the threads a ThreadRunner runs nodes and saves their outputs in: a node's own
    # mlflow.log_metric, or a tracking dataset saving its output, would otherwise find no active run there.

    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Node) -> None:
        """Make the hook's run active in the node's thread."""
        if self._threads is not None:
            self._threads.enter()

    @hook_impl(trylast=True)
    def after_node_run(self, node: Node) -> None:
        """Give the node's thread its run stack back."""
        if self._threads is not None:
            self._threads.leave()

    @hook_impl(trylast=True)
    def on_node_error(self, error: Exception, node: Node) -> None:
        """Give the failed node's thread its run stack back."""
        if self._threads is not None:
            self._threads.leave()

    @hook_impl(tryfirst=True)
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Make the hook's run active in the saving thread (Kedro saves outputs after ``after_node_run``)."""
        if self._threads is not None:
            self._threads.enter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        """Give the saving thread its run stack back."""
        if self._threads is not None:
            self._threads.leave()

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict[str, Any], run_result: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Log the inference pipeline with the artifacts this run produced, then end the run the hook started."""
        if self._pipeline_ml is None:
            return
        import kedro.framework.project as kedro_project

        from airflow_kedro_mlflow.modelify import log_pipeline_model

        error: BaseException | None = None
        try:
            self.last_result = log_pipeline_model(
                self._pipeline_ml,
                catalog,
                registered_model_name=self.registered_model_name,
                aliases=self.aliases,
                kpm_kwargs=_kpm_kwargs(self._pipeline_ml),
                log_model_kwargs={
                    **dict(getattr(self._pipeline_ml, "log_model_kwargs", None) or {}),
                    **self.log_model_kwargs,
                },
                input_data=self._input_data,
                project_package=kedro_project.PACKAGE_NAME,
                mlflow_tags={"kedro.pipeline_name": self._pipeline_name, "kedro.env": self._run_env(run_params)},
                tracking=self._tracking,
            )
            logger.info("Logged the inference pipeline of %r as %s", self._pipeline_name, self.last_result.model_uri)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(error)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Mark the run the hook started FAILED: no model is logged for a failed training."""
        if self._pipeline_ml is not None:
            self._finish(error)

    def _run_env(self, run_params: Mapping[str, Any]) -> str | None:
        return run_params.get("env") or self._env

    def _finish(self, error: BaseException | None) -> None:
        """Leave the run scope (ending a run the hook started, FAILED when ``error``) and the tracking config."""
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                if error is None:
                    stack.close()
                else:
                    stack.__exit__(type(error), error, error.__traceback__)
        finally:
            self._reset()

    def _find_pipeline_ml(self, run_params: Mapping[str, Any], pipeline: Pipeline) -> tuple[str, PipelineMLLike] | None:
        """The registered PipelineML among the run's pipeline names whose whole training this run executes."""
        from kedro.framework.project import pipelines

        names = run_params.get("pipeline_names") or ["__default__"]
        ran = {node.name for node in pipeline.nodes}
        for name in names:
            candidate = pipelines.get(name)
            if candidate is None or not is_pipeline_ml(candidate):
                continue
            training_nodes = {node.name for node in candidate.training.nodes}
            skipped = sorted(training_nodes - ran)
            if skipped:
                logger.warning(
                    "PipelineMLHook: not logging a model for pipeline %r: this run skipped training nodes %s, so "
                    "its artifacts may be stale. Run the whole pipeline (kedro run --pipelines %s) to log one.",
                    name,
                    skipped,
                    name,
                )
                continue
            return name, candidate
        return None

    def _experiment_id(self, tracking: TrackingConfig) -> str:
        import kedro.framework.project as kedro_project

        name = (
            self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or kedro_project.PACKAGE_NAME or "Default"
        )
        return get_or_create_experiment(tracking.client(), name)


def _kpm_kwargs(pipeline_ml: PipelineMLLike) -> dict[str, Any]:
    kwargs = dict(getattr(pipeline_ml, "kpm_kwargs", None) or {})
    kwargs.pop("input_name", None)
    return kwargs
