""":func:`modelify`: from a Kedro project on disk (and maybe a training task's result) to a logged, registered model.

The entry point of the CLI and the Airflow operator. It checks every input before the first side effect (the Kedro
session's runtime params, the model's options: nothing is created in MLflow before), opens a Kedro session with what
training really used, takes the artifacts from the training run (its own manifest says which, checked by sha256: the
training XCom is not trusted), applies or refuses runtime params that change a trained value, and logs through
:func:`~airflow_kedro_mlflow.modelify.build.log_kedro_pipeline_model` — next to the training run without touching it, or
into a new run of its own that is deleted if anything fails.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroProjectError, MlflowConnectionError, PipelineMLError
from airflow_kedro_mlflow.kedro_project import KedroRunSpec
from airflow_kedro_mlflow.modelify.artifacts import parameters_from_session, resolve_training_artifacts
from airflow_kedro_mlflow.modelify.build import build_pipeline_model, log_kedro_pipeline_model
from airflow_kedro_mlflow.modelify.idempotency import discard_unfinished, reuse_logged_model
from airflow_kedro_mlflow.modelify.options import normalize_log_model_kwargs
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.tracking.config import same_tracking_uri, strip_userinfo
from airflow_kedro_mlflow.tracking.registry import validate_aliases, validate_registered_model_name
from airflow_kedro_mlflow.tracking.runs import get_or_create_experiment, get_run, run_scope
from airflow_kedro_mlflow.tracking.tags import (
    TRAINING_RUN_TAG,
    idempotency_token,
    lineage_tags,
    try_number,
)

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

    from airflow_kedro_mlflow.model import KedroPipelineModel
    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)


def modelify(
    project_path: str | os.PathLike[str] | KedroRunSpec | None = None,
    pipeline_name: str | None = None,
    *,
    tracking: TrackingConfig | None = None,
    env: str | None = None,
    conf_source: str | None = None,
    runtime_params: Mapping[str, Any] | None = None,
    input_name: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    experiment_name: str | None = None,
    registered_model_name: str | None = None,
    aliases: Sequence[str] = (),
    copy_mode: str | Mapping[str, str] | None = None,
    log_model_kwargs: Mapping[str, Any] | None = None,
    training: TrainingResult | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    idempotency_key: Mapping[str, Any] | None = None,
) -> ModelifyResult:
    """Log the inference pipeline of a Kedro project's pipeline as an MLflow model, and register it if asked.

    :param project_path: the Kedro project root, or a whole :class:`~airflow_kedro_mlflow.kedro_project.KedroRunSpec`;
        with ``training``, None means the training task's project (and its pipeline, env, conf source and params).
    :param pipeline_name: a registered pipeline: a ``PipelineML`` (its inference part is logged), or an inference
        pipeline together with ``input_name``.
    :param tracking: where MLflow is; ``TrackingConfig.from_env()`` (``MLFLOW_TRACKING_URI``) when None.
    :param env: Kedro env (default: the training task's, else ``KEDRO_ENV`` or the project's default run env).
    :param conf_source: Kedro configuration source (default: the training task's, else the project's ``conf/``).
    :param runtime_params: Kedro runtime params; with ``training``, on top of the training task's. A changed
        ``params:`` value that only inference reads (``threshold``) is shipped in the model; one training used to
        produce an artifact (``C``) is refused: train again with it. Each value must have the type of the project's
        parameter, and unknown keys are warned about (see ``KedroRunSpec.session``).
    :param run_id: log the model next to this existing run (it is not resumed: its status and times stay); with
        ``training`` and no ``run_id``, next to the training run; otherwise into a new run named ``run_name`` in
        ``experiment_name`` (default: the project's package name).
    :param registered_model_name: None logs only; a name also registers a version and sets ``aliases`` on it.
    :param log_model_kwargs: ``mlflow.pyfunc.log_model`` arguments as kedro-mlflow users pass them
        (``artifact_path``/``name``, ``signature="auto"``, ``pip_requirements``, ``code_paths``...), on top of the
        ``PipelineML``'s own ``log_model_kwargs`` (these win key by key).
    :param training: a training task's result (untrusted: it may only choose the run): the artifacts are the files
        that run's manifest lists, checked by sha256 — a local file only where this project's catalog keeps it,
        else the run's copy — instead of what the catalog points to now, and its signature is reused.
    :param mlflow_tags: tags for a new run, the logged model and the model version (e.g. ``airflow.dag_id``).
    :param idempotency_key: e.g. the task identity tags: when a model was already logged (and registered) for it
        and the same training run, it is reused instead of logging a second one.
    :raises KedroProjectError: not a Kedro project, unknown pipeline or env, a runtime param of the wrong type or
        one that would change a trained artifact.
    :raises KedroPipelineModelError: an invalid ``copy_mode`` or ``log_model_kwargs``, or a model that fails its
        test prediction.
    :raises MlflowRunNotFoundError: ``run_id`` does not exist.
    :raises ArtifactNotFoundError: an artifact was not produced yet ("run the training pipeline first").
    :raises ArtifactIntegrityError: an artifact differs from what training recorded, or the XCom from its run.
    :raises ModelRegistrationError: invalid name or alias, or the registry refused the version.
    """
    from airflow_kedro_mlflow.tracking import TrackingConfig

    tracking = tracking if tracking is not None else TrackingConfig.from_env()
    spec = _resolve_spec(
        project_path,
        pipeline_name=pipeline_name,
        env=env,
        conf_source=conf_source,
        runtime_params=runtime_params,
        training=training,
    )
    if training is not None and not same_tracking_uri(training.tracking_uri, tracking.tracking_uri):
        raise MlflowConnectionError(
            f"the training result was logged to {strip_userinfo(training.tracking_uri)} but modelify is "
            f"configured for {strip_userinfo(tracking.tracking_uri)}. Point modelify's MLflow connection at "
            "the training task's tracking server, so the model is logged next to its training run."
        )
    if registered_model_name is not None:
        validate_registered_model_name(registered_model_name)
    alias_list = validate_aliases(aliases, registered_model_name)
    if training is not None:
        run_id = run_id or training.run_id
        input_name = input_name or training.input_name or None
        if idempotency_key:
            # A re-run of training (new run id) must give a new model; a retry of modelify must not.
            idempotency_key = {**idempotency_key, "training_run_id": training.run_id}
    token = idempotency_token(idempotency_key) if idempotency_key else None

    with _project_session(spec) as opened:
        pipeline = opened.pipeline
        if not hasattr(pipeline, "inference") and input_name is None:
            raise PipelineMLError(
                f"pipeline {spec.pipeline_name!r} is a plain Pipeline, not a PipelineML, so modelify cannot tell which "
                "dataset receives the data to predict on: pass input_name (--input-name), or register the pipeline "
                "with pipeline_ml_factory."
            )
        # The PipelineML's own log_model_kwargs, overridden key by key by the caller's.
        options_kwargs = {**dict(getattr(pipeline, "log_model_kwargs", None) or {}), **dict(log_model_kwargs or {})}
        options = normalize_log_model_kwargs(options_kwargs, registered_model_name)
        alias_list = validate_aliases(alias_list, options.registered_model_name)
        kpm_kwargs = dict(getattr(pipeline, "kpm_kwargs", None) or {})
        kpm_kwargs.pop("input_name", None)
        tags = lineage_tags(mlflow_tags, env=opened.env, pipeline_name=spec.pipeline_name,
                            project_path=spec.project_path)  # fmt: skip
        # Built here, before any side effect, so copy_mode and the other model options fail first; it is the model
        # that is logged.
        model = build_pipeline_model(
            pipeline, opened.catalog, input_name=input_name, copy_mode=copy_mode, kpm_kwargs=kpm_kwargs
        )
        from_session: set[str] = set()
        if training is not None:
            tags[TRAINING_RUN_TAG] = training.run_id
            from_session = _changed_parameters(
                model, opened, spec, training, _caller_params(project_path, runtime_params)
            )

        with tracking.activate():
            tracking.check_connection()  # an unreachable server fails here, readably, before any side effect
            client = tracking.client()
            experiment_id = _experiment_for(client, run_id, experiment_name or opened.package_name)
            if token is not None:
                discard_unfinished(client, experiment_id, token, try_number(tags))
                reused = reuse_logged_model(
                    client,
                    experiment_id=experiment_id,
                    token=token,
                    registered_model_name=options.registered_model_name,
                    aliases=alias_list,
                    tags=tags,
                    tracking=tracking,
                )
                if reused is not None:
                    return reused
            with tempfile.TemporaryDirectory(prefix="akm-artifacts-") as download_dir:
                artifacts = None
                if training is not None:
                    paths, hashes = resolve_training_artifacts(training, download_dir, catalog=opened.catalog)
                    # params modelify's runtime params change come from its session's catalog (extracted there)
                    artifacts = (
                        {name: path for name, path in paths.items() if name not in from_session},
                        {name: digest for name, digest in hashes.items() if name not in from_session},
                    )
                signature = _recorded_signature(training, {name: opened.catalog.load(name) for name in from_session})
                log: dict[str, Any] = {  # log_kedro_pipeline_model's keyword arguments, the same in both branches
                    "catalog": opened.catalog,
                    "registered_model_name": options.registered_model_name,
                    "aliases": alias_list,
                    "log_model_kwargs": {**options_kwargs, "registered_model_name": None},
                    "artifacts": artifacts,
                    "signature": signature,
                    "project_package": opened.package_name,
                    "mlflow_tags": tags,
                    "idempotency_key": idempotency_key,
                    "tracking": tracking,
                }
                if run_id is not None:
                    return log_kedro_pipeline_model(model, run_id=run_id, **log)
                with run_scope(client, experiment_id=experiment_id, run_name=run_name, tags=tags,
                               delete_on_failure=True):  # fmt: skip
                    return log_kedro_pipeline_model(model, **log)


def _resolve_spec(
    project: str | os.PathLike[str] | KedroRunSpec | None,
    *,
    pipeline_name: str | None,
    env: str | None,
    conf_source: str | None,
    runtime_params: Mapping[str, Any] | None,
    training: TrainingResult | None,
) -> KedroRunSpec:
    """What training really used, unless the caller overrides it: the same project, env and params give the same
    catalog (the caller's runtime params go on top of training's, key by key). Without a training result, the
    caller's values."""
    overrides = {"env": env, "conf_source": conf_source, "runtime_params": runtime_params}
    if isinstance(project, KedroRunSpec):
        return project.with_overrides(pipeline_name=pipeline_name, **overrides)
    if training is not None:
        if runtime_params:
            overrides["runtime_params"] = {**training.runtime_params, **runtime_params}
        return training.spec.with_overrides(project_path=project and os.fspath(project), pipeline_name=pipeline_name,
                                            **overrides)  # fmt: skip
    if not project or not pipeline_name:
        raise KedroProjectError(
            f"modelify needs a project_path and a pipeline_name (got {project!r} and {pipeline_name!r}): pass "
            "them, or pass the training result of a KedroTrainingOperator/run_training."
        )
    return KedroRunSpec(os.fspath(project), pipeline_name, env=env, conf_source=conf_source,
                        runtime_params=runtime_params or {})  # fmt: skip


def _caller_params(
    project: str | os.PathLike[str] | KedroRunSpec | None, runtime_params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The runtime params modelify's caller gave (not the training task's): those may change a trained value."""
    given = dict(project.runtime_params) if isinstance(project, KedroRunSpec) else {}
    return {**given, **dict(runtime_params or {})}


def _changed_parameters(
    model: KedroPipelineModel,
    opened: _OpenedProject,
    spec: KedroRunSpec,
    training: TrainingResult,
    caller_params: Mapping[str, Any],
) -> set[str]:
    """The ``params:`` artifacts the caller's runtime params change (refusing those training used for an artifact)."""
    if not caller_params:
        return set()
    from airflow_kedro_mlflow.kedro_project import get_pipeline

    trained: Pipeline | None = getattr(opened.pipeline, "training", None)
    if trained is None:  # modelify of a plain inference pipeline: training's pipeline is the registered one
        registered = get_pipeline(spec.project_path, training.pipeline_name)
        trained = getattr(registered, "training", registered)
    return parameters_from_session(
        inference_params={name for name in model.artifact_names if name.startswith("params:")},
        training_pipeline=trained,
        artifact_names=model.artifact_names,
        runtime_params=caller_params,
        trained_params=(training.runtime_params, opened.parameters),
        run_id=training.run_id,
    )


def _recorded_signature(training: TrainingResult | None, new_defaults: Mapping[str, Any]) -> ModelSignature | None:
    """The signature training recorded, with the defaults of the ``params:`` in ``new_defaults`` replaced.

    MLflow fills a predict call's missing params with the signature's defaults: a param modelify's runtime params
    changed must default to its new value there too, or the model would still predict with the training value.
    """
    if training is None or not training.signature:
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import DataType, ParamSchema, ParamSpec

    signature = ModelSignature.from_dict(training.signature)
    if signature.params is None or not new_defaults:
        return signature
    specs = []
    for spec in signature.params.params:
        default = new_defaults.get(f"params:{spec.name}", spec.default)
        if spec.dtype == DataType.double and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        specs.append(ParamSpec(spec.name, spec.dtype, default, spec.shape))
    return ModelSignature(inputs=signature.inputs, outputs=signature.outputs, params=ParamSchema(specs))


def _experiment_for(client: MlflowClient, run_id: str | None, experiment_name: str) -> str:
    """The experiment of ``run_id`` (which must exist), else of ``experiment_name`` (created when missing)."""
    if run_id is not None:
        return str(get_run(client, run_id).info.experiment_id)
    return get_or_create_experiment(client, experiment_name)


@dataclass
class _OpenedProject:
    pipeline: Pipeline
    catalog: CatalogProtocol
    env: str | None
    package_name: str
    parameters: dict[str, Any]  # the project's own, without runtime params


@contextmanager
def _project_session(spec: KedroRunSpec) -> Iterator[_OpenedProject]:
    """Open the project; yield the registered pipeline, the session's catalog, its env and the package name."""
    from airflow_kedro_mlflow.kedro_project import effective_env, get_pipeline, project_parameters

    with spec.session() as session:
        import kedro.framework.project as kedro_project

        pipeline = get_pipeline(session, spec.pipeline_name)
        context = session.load_context()
        yield _OpenedProject(
            pipeline=pipeline,
            catalog=context.catalog,
            env=effective_env(context),
            package_name=str(kedro_project.PACKAGE_NAME),
            parameters=project_parameters(context),
        )
