"""Operators that train a Kedro pipeline and turn its inference pipeline into an MLflow model.

Both are thin: resolve the ``mlflow`` connection and the templated arguments, call one core function
(:func:`~airflow_kedro_mlflow.training.run_training` or :func:`~airflow_kedro_mlflow.modelify.modelify`) and push
XCom. Everything they do can be done from Python or the CLI too. kedro and mlflow are imported inside ``execute``
only, so a DAG file that imports this module stays cheap for the DAG processor.

Where that function runs is one argument, ``execution``: in the task process (default), or in the project's own
Python environment (:class:`~airflow_kedro_mlflow.execution.VirtualenvExecution`), which runs the same function
through the ``airflow-kedro-mlflow`` CLI in a child process and returns the same XCom.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kedro_mlflow.assets import add_model_alias_outlet, emit_model_alias_events
from airflow_kedro_mlflow.exceptions import KedroProjectError, ModelRegistrationError, TrainingXComError
from airflow_kedro_mlflow.execution import Execution, resolve_execution
from airflow_kedro_mlflow.hooks.mlflow import MlflowHook
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.links.mlflow import (
    MLFLOW_MODEL_VERSION_URL_KEY,
    MLFLOW_RUN_URL_KEY,
    MlflowModelVersionLink,
    MlflowRunLink,
)
from airflow_kedro_mlflow.openlineage import OpenLineageMixin, modelify_lineage, training_lineage
from airflow_kedro_mlflow.operators.interruptible import InterruptibleMixin
from airflow_kedro_mlflow.tracking.sweeps import sweep_identity
from airflow_kedro_mlflow.tracking.tags import (
    DAG_ID_TAG,
    DAG_RUN_ID_TAG,
    MAP_INDEX_TAG,
    RETRY_IDENTITY_TAGS,
    TASK_ID_TAG,
    TRY_NUMBER_TAG,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperatorLink, Context

    from airflow_kedro_mlflow.training_result import TrainingResult

#: XCom key under which both operators return their result (Airflow's ``return_value``): the training task's
#: payload is :meth:`TrainingResult.to_xcom`, the modelify task's :meth:`ModelifyResult.to_xcom`.
RESULT_KEY = "return_value"
#: XCom key of the MLflow run id, pushed by both operators for templates such as ``{{ ti.xcom_pull(...) }}``.
RUN_ID_KEY = "run_id"
#: XCom key of the ``models:/…`` URI of the logged (or registered) model, pushed by ``KedroModelifyOperator``.
MODEL_URI_KEY = "model_uri"


def lineage_tags(context: Context) -> dict[str, str]:
    """Return the MLflow tags that tie a run or model version to the Airflow task try that made it.

    The map index is part of a task's identity: mapped instances of one task are distinct tasks (-1 when unmapped).
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", None)
    return {
        DAG_ID_TAG: ti.dag_id,
        DAG_RUN_ID_TAG: ti.run_id,
        TASK_ID_TAG: ti.task_id,
        MAP_INDEX_TAG: str(-1 if map_index is None else map_index),
        TRY_NUMBER_TAG: str(ti.try_number),
    }


class _KedroTaskOperator(InterruptibleMixin, OpenLineageMixin, BaseOperator):
    """Common part of the Kedro operators: the connection, the execution mode, and interrupting the run on kill.

    ``on_kill`` raises into the running code (:class:`~airflow_kedro_mlflow.operators.interruptible.
    InterruptibleMixin`). In-process, that code is Kedro's run, and the core marks the MLflow run failed on its way
    out. In a virtualenv, it is the loop streaming the child's log: on its way out it stops the child's process group
    (SIGTERM, which the CLI raises into its run, then SIGKILL) and marks the run FAILED if the child could not.
    """

    operator_extra_links: tuple[BaseOperatorLink, ...] = (MlflowRunLink(),)
    ui_color = "#ffc900"
    killed_while = "running Kedro; its MLflow run is marked failed."

    def __init__(
        self,
        *,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        execution: Execution | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        self.execution = resolve_execution(execution)


class KedroTrainingOperator(_KedroTaskOperator):
    """Run a Kedro training pipeline inside an MLflow run and publish where its artifacts are.

    The Kedro session runs in the task process with plain logging (one line per node) and telemetry off. Every
    artifact the inference pipeline needs is uploaded to the MLflow run and hashed, and the XCom payload (run id,
    artifact paths, MLflow URIs, sha256, signature) lets :class:`KedroModelifyOperator` build the model on
    another worker, with no shared disk. Each task try gets its own MLflow run; a failed try's run is marked failed.
    If the project enables airflow-kedro-mlflow's Kedro hook, its model logging is off while this task runs: in a
    DAG only the modelify task logs models.

    Typed DAG ``Param`` values reach Kedro with their types only when the DAG sets
    ``render_template_as_native_obj=True``; otherwise Jinja renders them as strings.

    :param project_path: Kedro project root as seen by the worker. (templated)
    :param pipeline_name: registered pipeline to run, normally a ``PipelineML``. (templated)
    :param env: Kedro configuration environment; Kedro's default (``local``) when None. (templated)
    :param conf_source: configuration folder or archive instead of the project's ``conf``. (templated)
    :param runtime_params: Kedro runtime parameters, as ``kedro run --params``; not ``params``, which Airflow owns.
        (templated)
    :param experiment_name: MLflow experiment; the Kedro project's package name when None. (templated)
    :param run_name: MLflow run name. (templated)
    :param run_id: train inside this existing MLflow run instead of a new one, so several tasks (or a task and the
        code that started the run) log into one run, e.g. ``"{{ ti.xcom_pull(task_ids='prepare', key='run_id') }}"``.
        The run is resumed and ended FINISHED (or FAILED) by this task. (templated)
    :param mlflow_tags: extra MLflow tags for the run, next to the ``airflow.*`` lineage tags. (templated)
    :param runner: Kedro runner class name or import path, e.g. ``ThreadRunner``. (templated)
    :param tags: Kedro node tags to run (a filter, not MLflow tags). (templated)
    :param node_names: Kedro node names to run. (templated)
    :param from_nodes: run from these nodes on. (templated)
    :param to_nodes: run up to these nodes. (templated)
    :param load_versions: ``{dataset: version}`` to load instead of the latest. (templated)
    :param params_options: how Kedro params are logged: ``{"shape": "flatten"}`` (one param per leaf, the default) or
        ``"kedro_mlflow"`` (kedro-mlflow's: a nested dict as one param), and ``"long_params_strategy"`` (``fail``,
        ``tag`` or ``truncate``). Keys not given come from the project's ``conf/<env>/airflow_kedro_mlflow.yml``.
        (templated)
    :param mlflow_conn_id: Airflow connection of type ``mlflow``.
    :param execution: where Kedro runs: ``InProcessExecution()`` (None, the default: in the task process),
        ``VirtualenvExecution(python=...)`` / ``VirtualenvExecution(requirements=...)`` (the project's own
        environment, without Airflow) or ``KubernetesExecution(image=...)`` (a pod of the project's image).
        Same XCom in every mode.

    A sweep is this operator mapped over hyper-parameters, ``KedroTrainingOperator.partial(...).expand(
    runtime_params=[...])``: each map index trains in its own run, nested under one parent run per DAG run (see
    :mod:`airflow_kedro_mlflow.tracking.sweeps`), and ``KedroModelifyOperator(select_best_by=...)`` builds the best.
    """

    template_fields: Sequence[str] = (
        "project_path",
        "pipeline_name",
        "env",
        "conf_source",
        "runtime_params",
        "experiment_name",
        "run_name",
        "run_id",
        "mlflow_tags",
        "runner",
        "tags",
        "node_names",
        "from_nodes",
        "to_nodes",
        "load_versions",
        "params_options",
    )
    template_fields_renderers = {
        "runtime_params": "json",
        "mlflow_tags": "json",
        "load_versions": "json",
        "params_options": "json",
    }

    def __init__(
        self,
        *,
        project_path: str,
        pipeline_name: str = "training",
        env: str | None = None,
        conf_source: str | None = None,
        runtime_params: dict[str, Any] | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        mlflow_tags: dict[str, str] | None = None,
        runner: str | None = None,
        tags: Sequence[str] | None = None,
        node_names: Sequence[str] | None = None,
        from_nodes: Sequence[str] | None = None,
        to_nodes: Sequence[str] | None = None,
        load_versions: dict[str, str] | None = None,
        params_options: dict[str, str] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        execution: Execution | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mlflow_conn_id=mlflow_conn_id, execution=execution, **kwargs)
        self.params_options = params_options
        self.project_path = project_path
        self.pipeline_name = pipeline_name
        self.env = env
        self.conf_source = conf_source
        self.runtime_params = runtime_params or {}
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.run_id = run_id
        self.mlflow_tags = mlflow_tags or {}
        self.runner = runner
        self.tags = tags
        self.node_names = node_names
        self.from_nodes = from_nodes
        self.to_nodes = to_nodes
        self.load_versions = load_versions

    def execute(self, context: Context) -> dict[str, Any]:
        """Train, upload the inference artifacts, and return the training XCom payload."""
        spec = KedroRunSpec(
            self.project_path,
            self.pipeline_name,
            env=self.env,
            conf_source=self.conf_source,
            runtime_params=_as_dict(self.runtime_params, "runtime_params") or {},
        )
        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        ti = context["ti"]

        def publish_run(run_id: str, run_url: str | None) -> None:
            # As soon as the run exists: a training that fails later still links to its (FAILED) run.
            ti.xcom_push(key=RUN_ID_KEY, value=run_id)
            if run_url:
                ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=run_url)

        tags = lineage_tags(context)
        with self._interruptible():
            result = self.execution.train(
                spec,
                tracking=tracking,
                experiment_name=self.experiment_name or None,
                run_name=self.run_name or None,
                run_id=self.run_id or None,
                mlflow_tags={**(_as_dict(self.mlflow_tags, "mlflow_tags") or {}), **tags},
                parent_run_tags=_sweep_identity(tags),
                runner=self.runner or None,
                tags=self.tags,
                node_names=self.node_names,
                from_nodes=self.from_nodes,
                to_nodes=self.to_nodes,
                load_versions=self.load_versions,
                params_options=_as_dict(self.params_options, "params_options"),
                on_run_start=publish_run,
                **_airflow_context(self.execution, context),
            )
        self._record_lineage(training_lineage, result)  # the catalog datasets read and written, the MLflow run
        return result.to_xcom()


class KedroModelifyOperator(_KedroTaskOperator):
    """Build the inference pipeline of a trained ``PipelineML`` as an MLflow model, and log or register it.

    Reads what the training task published (``training_task_id``), or the same fields given explicitly. Artifacts
    are taken from their local path when it exists and its sha256 matches, else downloaded from the training run and
    checked; a mismatch fails the task naming the artifact. An Airflow retry of the same dag run reuses the model an
    earlier try logged or registered (looked up by dag id, dag run id and training run id): never a second version.

    :param training_task_id: task id of the ``KedroTrainingOperator`` whose XCom to read; when None,
        ``project_path`` (and normally ``run_id``) must be given.
    :param project_path: Kedro project root; taken from the training XCom when None. (templated)
    :param pipeline_name: the ``PipelineML`` to modelify; the training task's pipeline when None. (templated)
    :param env: Kedro environment; the training task's when None. (templated)
    :param conf_source: Kedro configuration source; the training task's when None. (templated)
    :param runtime_params: Kedro runtime parameters; the training task's when None. (templated)
    :param input_name: the inference pipeline's input; the ``PipelineML``'s when None. (templated)
    :param run_id: MLflow run to log the model into; the training run when None. (templated)
    :param run_name: MLflow run name, when a new run is started. (templated)
    :param experiment_name: MLflow experiment, when a new run is started. (templated)
    :param registered_model_name: register a version under this name; None logs the model only. (templated)
    :param aliases: aliases to set on the new version, e.g. ``["challenger"]``; each alias moved emits an event of
        the Airflow asset ``mlflow-model://…/<name>@<alias>`` (:mod:`airflow_kedro_mlflow.assets`). (templated)
    :param log_model_kwargs: extra ``mlflow.pyfunc.log_model`` arguments, e.g. ``{"signature": "auto"}``.
        (templated)
    :param copy_mode: how the model hands datasets between nodes: a mode or a ``{dataset: mode}`` dict.
        (templated)
    :param mlflow_tags: extra MLflow tags for the run and version, next to the lineage tags. (templated)
    :param select_best_by: when the training task is a sweep (mapped), build the model of its best training: the
        finished run with the best value of this MLflow metric (see :func:`~airflow_kedro_mlflow.tracking.sweeps.
        best_run`). The trigger rule then defaults to ``all_done``, so failed trials do not stop the best one, and a
        sweep whose every trial failed fails this task with :class:`~airflow_kedro_mlflow.exceptions.SweepError`.
        (templated)
    :param greater_is_better: with ``select_best_by``: True when a higher metric is better (accuracy), False when
        lower is (rmse).
    :param mlflow_conn_id: Airflow connection of type ``mlflow``; must point to the training task's server.
    :param execution: where the model is built: in the task process (None, the default) or in the project's own
        environment (``VirtualenvExecution(...)``), independently of where training ran.
    """

    template_fields: Sequence[str] = (
        "project_path",
        "pipeline_name",
        "env",
        "conf_source",
        "runtime_params",
        "input_name",
        "run_id",
        "run_name",
        "experiment_name",
        "registered_model_name",
        "aliases",
        "log_model_kwargs",
        "copy_mode",
        "mlflow_tags",
        "select_best_by",
    )
    template_fields_renderers = {"runtime_params": "json", "log_model_kwargs": "json", "mlflow_tags": "json"}
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())

    def __init__(
        self,
        *,
        training_task_id: str | None = None,
        project_path: str | None = None,
        pipeline_name: str | None = None,
        env: str | None = None,
        conf_source: str | None = None,
        runtime_params: dict[str, Any] | None = None,
        input_name: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        experiment_name: str | None = None,
        registered_model_name: str | None = None,
        aliases: Sequence[str] = (),
        log_model_kwargs: dict[str, Any] | None = None,
        copy_mode: str | dict[str, str] | None = None,
        mlflow_tags: dict[str, str] | None = None,
        select_best_by: str | None = None,
        greater_is_better: bool = True,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        execution: Execution | None = None,
        **kwargs: Any,
    ) -> None:
        if select_best_by:
            kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(mlflow_conn_id=mlflow_conn_id, execution=execution, **kwargs)
        if select_best_by and training_task_id is None:
            raise TrainingXComError(
                f"KedroModelifyOperator {self.task_id!r} has select_best_by={select_best_by!r} but no "
                "training_task_id: pass the id of the mapped KedroTrainingOperator task whose best training to build."
            )
        if training_task_id is None and project_path is None:
            raise KedroProjectError(
                f"KedroModelifyOperator {self.task_id!r} needs to know what to modelify: pass training_task_id "
                "(the id of the KedroTrainingOperator task upstream), or project_path and run_id explicitly."
            )
        self.training_task_id = training_task_id
        self.project_path = project_path
        self.pipeline_name = pipeline_name
        self.env = env
        self.conf_source = conf_source
        self.runtime_params = runtime_params
        self.input_name = input_name
        self.run_id = run_id
        self.run_name = run_name
        self.experiment_name = experiment_name
        self.registered_model_name = registered_model_name
        self.aliases = aliases
        self.log_model_kwargs = log_model_kwargs
        self.copy_mode = copy_mode
        self.mlflow_tags = mlflow_tags or {}
        self.select_best_by = select_best_by
        self.greater_is_better = greater_is_better
        add_model_alias_outlet(self)  # the alias outlet its model events go through (see the assets module)

    def execute(self, context: Context) -> dict[str, Any]:
        """Build the model from the training run's artifacts, log or register it once, and return where it is."""
        training = self._best_training(context) if self.select_best_by else self._training_result(context)
        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        tags = lineage_tags(context)
        with self._interruptible():
            result = self.execution.modelify(
                self.project_path or (training.project_path if training else None),
                self.pipeline_name or (training.pipeline_name if training else None),
                tracking=tracking,
                env=self.env or None,
                conf_source=self.conf_source or None,
                runtime_params=_as_dict(self.runtime_params, "runtime_params"),
                input_name=self.input_name or None,
                run_id=self.run_id or None,
                run_name=self.run_name or None,
                experiment_name=self.experiment_name or None,
                registered_model_name=self.registered_model_name or None,
                aliases=_as_list(self.aliases, "aliases"),
                copy_mode=self.copy_mode,
                log_model_kwargs=_as_dict(self.log_model_kwargs, "log_model_kwargs"),  # None: the PipelineML's
                training=training,
                mlflow_tags={**(_as_dict(self.mlflow_tags, "mlflow_tags") or {}), **tags},
                idempotency_key={key: tags[key] for key in RETRY_IDENTITY_TAGS},
                **_airflow_context(self.execution, context),
            )
        ti = context["ti"]
        ti.xcom_push(key=RUN_ID_KEY, value=result.run_id)
        ti.xcom_push(key=MODEL_URI_KEY, value=result.model_uri)
        if result.run_url:
            ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=result.run_url)
        if result.model_version_url:
            ti.xcom_push(key=MLFLOW_MODEL_VERSION_URL_KEY, value=result.model_version_url)
        if result.registered_model_name and result.version:
            # A reused version is an earlier try's: its aliases moved then, announced unless that try failed.
            emit_model_alias_events(
                context,
                tracking,
                result.registered_model_name,
                result.version,
                result.aliases,
                moved_now=not result.reused,
                run_id=result.run_id,
            )
        self._record_lineage(modelify_lineage, result, tracking.public_uri)  # training run -> model (version)
        return result.to_xcom()

    def _training_result(self, context: Context) -> TrainingResult | None:
        """Return the upstream training task's ``TrainingResult``, or None when fields are given explicitly.

        When both tasks are mapped (this one expanded over the training task's output), map index ``i`` reads what
        training map index ``i`` published: Airflow's ``xcom_pull`` would otherwise return every index's payload.
        """
        if self.training_task_id is None:
            return None
        from airflow_kedro_mlflow.training_result import TrainingResult

        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        training_mapped = self._is_mapped_upstream(self.training_task_id)
        if training_mapped and isinstance(map_index, int) and map_index >= 0:
            payload = ti.xcom_pull(task_ids=self.training_task_id, key=RESULT_KEY, map_indexes=map_index)
        else:
            payload = ti.xcom_pull(task_ids=self.training_task_id, key=RESULT_KEY)
        if training_mapped and isinstance(payload, list):
            raise TrainingXComError(
                f"training task {self.training_task_id!r} is mapped ({len(payload)} results), so task "
                f"{self.task_id!r} cannot tell which training to modelify. Build the best one with "
                "select_best_by='<metric>', or map this task over the training task's output too: "
                f"KedroModelifyOperator.partial(task_id={self.task_id!r}, training_task_id="
                f"{self.training_task_id!r}, ...).expand(run_id=train.output.map(run_id_of)), where "
                "run_id_of(result) returns result['run_id']."
            )
        if payload is None:
            raise TrainingXComError(
                f"training task {self.training_task_id!r} published no XCom in dag run {ti.run_id!r}. Run this task "
                f"downstream of it ({self.training_task_id} >> {self.task_id}) after it succeeded, or pass "
                "project_path and run_id explicitly and training_task_id=None."
            )
        training = TrainingResult.from_xcom(payload)
        self._check_training_project(training)
        return training

    def _best_training(self, context: Context) -> TrainingResult:
        """Return the result of the sweep's training whose run has the best ``select_best_by`` metric.

        The candidates are the results the mapped training task published (failed trials publish none); which one
        wins is decided by the metrics on the tracking server, and every candidate run must carry the training
        task's identity tags, so a changed XCom cannot slip in a run from elsewhere.
        """
        from airflow_kedro_mlflow.exceptions import SweepError
        from airflow_kedro_mlflow.tracking.sweeps import best_run
        from airflow_kedro_mlflow.training_result import TrainingResult

        assert self.training_task_id is not None  # checked in __init__
        ti = context["ti"]
        if not self._is_mapped_upstream(self.training_task_id):
            raise TrainingXComError(
                f"select_best_by picks the best training of a sweep, but training task {self.training_task_id!r} is "
                "not mapped. Map it (KedroTrainingOperator.partial(...).expand(runtime_params=[...])), or drop "
                "select_best_by to build its one training."
            )
        payload = ti.xcom_pull(task_ids=self.training_task_id, key=RESULT_KEY)
        # Airflow returns the one value itself when only one map index published a result.
        published = payload if isinstance(payload, list) else [payload]
        candidates = [TrainingResult.from_xcom(item) for item in published if item is not None]
        if not candidates:
            raise SweepError(
                f"every training of sweep {self.training_task_id!r} failed in dag run {ti.run_id!r}, so there is no "
                "model to build. See the failed map indexes' logs, fix the cause, and clear them."
            )
        identity = {DAG_ID_TAG: ti.dag_id, DAG_RUN_ID_TAG: ti.run_id, TASK_ID_TAG: self.training_task_id}
        tracking = MlflowHook(self.mlflow_conn_id).get_tracking_config()
        with tracking.activate():
            run, _ = best_run(
                tracking.client(),
                [candidate.run_id for candidate in candidates],
                str(self.select_best_by),
                greater_is_better=self.greater_is_better,
                identity=identity,
            )
        training = next(candidate for candidate in candidates if candidate.run_id == run.info.run_id)
        self._check_training_project(training)
        return training

    def _check_training_project(self, training: TrainingResult) -> None:
        """Refuse an XCom that names another project than the training task's own.

        The XCom may choose which training run to build from (its artifacts are checked against that run's
        manifest), but the project it names is imported on this worker: its pipeline registry and nodes are code.
        The training task's ``project_path`` in the DAG file is trusted; when it is a plain path (not a template,
        not a mapped argument) the XCom's must be the same directory. A task that names its own ``project_path``
        does not use the XCom's at all.
        """
        if self.project_path or self.training_task_id is None:
            return
        dag = self.get_dag()
        if dag is None or not dag.has_task(self.training_task_id):
            return
        task = dag.get_task(self.training_task_id)
        # A mapped task keeps its constructor arguments in partial_kwargs (an expanded one is not known here).
        arguments = getattr(task, "partial_kwargs", {}) if task.is_mapped else vars(task)
        declared = arguments.get("project_path")
        if not isinstance(declared, str | os.PathLike) or "{" in os.fspath(declared):
            return
        if os.path.realpath(declared) != os.path.realpath(training.project_path):
            raise TrainingXComError(
                f"the XCom of training task {self.training_task_id!r} names project_path "
                f"{training.project_path!r}, but that task is declared with project_path {os.fspath(declared)!r}: "
                "the XCom was changed after the training ran, so this task will not import that project's code. "
                f"Clear and re-run {self.training_task_id!r}, or give {self.task_id!r} its own project_path."
            )

    def _is_mapped_upstream(self, task_id: str) -> bool:
        """Whether task ``task_id`` of this task's DAG is mapped (False outside a DAG, e.g. a direct execute())."""
        dag = self.get_dag()
        if dag is None or not dag.has_task(task_id):
            return False
        return bool(dag.get_task(task_id).is_mapped)


def _sweep_identity(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The sweep a mapped training task's run belongs to (dag, dag run, task), None for an unmapped task."""
    return None if tags[MAP_INDEX_TAG] == "-1" else sweep_identity(tags)


def _airflow_context(execution: Execution, context: Context) -> dict[str, Any]:
    """``{"context": context}`` for a mode that runs Airflow machinery itself (``KubernetesExecution`` runs a
    ``KubernetesPodOperator``, which needs the task context); nothing for the others, which take the core's
    arguments only."""
    return {"context": context} if getattr(execution, "needs_airflow_context", False) else {}


def _as_dict(value: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """Check a templated dict argument (None stays None); a string means a template rendered text, not a dict."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise KedroProjectError(
            f"{name} must be a dict, got {type(value).__name__} {value!r}. A template that renders a whole dict "
            "needs the DAG's render_template_as_native_obj=True; or template each value inside a dict instead."
        )
    return dict(value)


def _as_list(value: str | Sequence[str] | None, name: str) -> list[str]:
    """Accept one alias as a plain string (a rendered Param often is one) or a list of them."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping) or not all(isinstance(item, str) for item in value):
        raise ModelRegistrationError(f"{name} must be a string or a list of strings, got {value!r}.")
    return list(value)
