"""Build a ``KedroPipelineModel``, log it and register it: the one place, for modelify, the Kedro hook and the dataset.

A model logged by any entry point therefore has the same artifacts, signature, environment (the project's package
in ``code_paths``, pinned requirements), tags, idempotent registration and cleanup.

The model is logged either into the MLflow run active in this process (the Kedro hook's run, a dataset saved during
a hooked run) or *next to* an existing run given by id (modelify and its training run): then the logged model names
that run as its source and is linked to it as an output, but the run itself is never resumed, so its status and
times stay what training left.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import MlflowRunConflictError, MlflowRunNotFoundError
from airflow_kedro_mlflow.modelify.options import normalize_log_model_kwargs, with_default_environment
from airflow_kedro_mlflow.modelify.result import ModelifyResult
from airflow_kedro_mlflow.tracking.registry import (
    delete_logged_model,
    is_pending,
    is_ready,
    reconcile_logged_models,
    register_version,
    search_logged_models,
    set_aliases,
    validate_aliases,
    version_model_id,
)
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG, clean_tags, idempotency_token

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

    from airflow_kedro_mlflow.model import KedroPipelineModel
    from airflow_kedro_mlflow.pipeline.pipeline_ml import PipelineMLLike
    from airflow_kedro_mlflow.tracking import TrackingConfig

logger = logging.getLogger(__name__)


def log_pipeline_model(
    pipeline: PipelineMLLike | Pipeline,
    catalog: CatalogProtocol,
    *,
    input_name: str | None = None,
    copy_mode: str | Mapping[str, str] | None = None,
    kpm_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> ModelifyResult:
    """Log the inference pipeline of ``pipeline`` as a ``KedroPipelineModel``, and register it when asked.

    Builds the model, then logs it with :func:`log_kedro_pipeline_model` (``options`` are its keyword arguments).

    :param pipeline: a ``PipelineML`` (ours or kedro-mlflow's: anything with ``inference`` and ``input_name``), or a
        plain inference ``Pipeline`` together with ``input_name``.
    :param catalog: the catalog the artifacts are read from (the project's, or the run's after ``kedro run``).
    """
    model = build_pipeline_model(pipeline, catalog, input_name=input_name, copy_mode=copy_mode, kpm_kwargs=kpm_kwargs)
    return log_kedro_pipeline_model(model, catalog=catalog, **options)


def build_pipeline_model(
    pipeline: PipelineMLLike | Pipeline,
    catalog: CatalogProtocol,
    *,
    input_name: str | None = None,
    copy_mode: str | Mapping[str, str] | None = None,
    kpm_kwargs: Mapping[str, Any] | None = None,
) -> KedroPipelineModel:
    """The ``KedroPipelineModel`` of ``pipeline``: ``kpm_kwargs`` with ``copy_mode`` and ``input_name`` on top.

    Building it checks copy modes, the runner and the artifacts' catalog entries, so callers build it before
    creating anything in MLflow.
    """
    from airflow_kedro_mlflow.model import KedroPipelineModel

    model_kwargs: dict[str, Any] = dict(kpm_kwargs or {})
    if copy_mode is not None:
        model_kwargs["copy_mode"] = copy_mode
    if input_name is not None:
        model_kwargs["input_name"] = input_name
    return KedroPipelineModel(pipeline, catalog, **model_kwargs)


def log_kedro_pipeline_model(
    model: KedroPipelineModel,
    *,
    catalog: CatalogProtocol | None = None,
    registered_model_name: str | None = None,
    aliases: Sequence[str] = (),
    log_model_kwargs: Mapping[str, Any] | None = None,
    artifacts: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
    input_data: Any = None,
    signature: ModelSignature | None = None,
    project_package: str | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    idempotency_key: Mapping[str, Any] | None = None,
    tracking: TrackingConfig | None = None,
    run_id: str | None = None,
) -> ModelifyResult:
    """Log a built ``KedroPipelineModel`` (modelify, the Kedro hook, ``MlflowModelDataset``), and register it if asked.

    The caller owns the tracking URIs (``TrackingConfig.activate()``). With ``run_id`` the model is logged next to
    that run without resuming it; without, into the active run. It registers a version when
    ``registered_model_name`` is given (also from ``log_model_kwargs``) and moves ``aliases`` onto it. If logging
    fails, the partially created logged model is deleted and no version is registered.

    :param catalog: the catalog the model was built from: artifacts not yet extracted, and for ``signature="auto"``
        the input data and params; without one, ``signature="auto"`` logs no signature (with a warning).
    :param artifacts: ``({name: local path}, {name: sha256})`` fetched elsewhere (see
        :func:`~airflow_kedro_mlflow.modelify.resolve_training_artifacts`); else the artifacts are extracted from
        ``catalog`` and must exist.
    :param input_data: training input data for ``signature="auto"``; loaded from ``catalog`` when None.
    :param signature: a signature recorded at training time, used for ``signature="auto"`` before inferring one.
    :param project_package: the Kedro project's package, shipped with ``code_paths`` and used for requirements.
    :param mlflow_tags: tags for the logged model and the model version (a run's tags are its owner's).
    :param idempotency_key: recorded (hashed) as a tag so a retry finds this model; racing tries converge on one.
    :param tracking: only used for browser links in the result.
    :param run_id: log next to this run (its source run) instead of into the active run.
    :raises ArtifactNotFoundError: an artifact is not persisted or its file does not exist yet.
    :raises ModelRegistrationError: the name or an alias is invalid, or the registry refused the version.
    :raises MlflowRunNotFoundError: neither ``run_id`` nor an active run.
    :raises MlflowRunConflictError: the run already has a logged model of this name (see :func:`refuse_taken_name`).
    """
    import mlflow

    options = normalize_log_model_kwargs(log_model_kwargs, registered_model_name)
    alias_list = validate_aliases(aliases, options.registered_model_name)
    active = mlflow.active_run()
    if run_id is None:
        if active is None:
            raise MlflowRunNotFoundError(
                "log_pipeline_model needs an MLflow run: call it inside mlflow.start_run(), pass run_id, or use "
                "modelify() which takes care of it."
            )
        source_run_id = active.info.run_id
    else:
        if active is not None and active.info.run_id != run_id:
            raise MlflowRunConflictError(
                f"MLflow run {active.info.run_id} is active in this process, so the model cannot be logged next to "
                f"run {run_id}: MLflow would link it to the active run. End the active run first, or drop run_id."
            )
        source_run_id = run_id
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(source_run_id).info.experiment_id

    tags = clean_tags(mlflow_tags)
    token = idempotency_token(idempotency_key) if idempotency_key else None
    if token is not None:
        tags[IDEMPOTENCY_TAG] = token
    refuse_taken_name(client, experiment_id, source_run_id, options.name, token)

    with tempfile.TemporaryDirectory(prefix="akm-params-") as params_dir:
        if artifacts is not None:
            # Files fetched elsewhere (the training task's), checked against their recorded hashes; what they do not
            # cover (params of this session) is still extracted from the catalog below.
            paths, hashes = artifacts
            needed = set(model.artifact_names)
            model.set_artifacts(
                {name: path for name, path in paths.items() if name in needed},
                {name: digest for name, digest in hashes.items() if name in needed},
            )
        artifact_paths = model.extract_pipeline_artifacts(params_dir)
        sample = _sample_rows(model, input_data=input_data, catalog=catalog,
                              input_example=options.passthrough.get("input_example"))  # fmt: skip
        _smoke_test(model, artifact_paths, sample)
        resolved_signature = _resolve_signature(
            options.signature, recorded=signature, input_data=input_data, model=model, catalog=catalog
        )
        log_kwargs = with_default_environment(options.passthrough, project_package)
        if "input_example" not in log_kwargs and resolved_signature is not None and _is_example(sample):
            # A few rows of the training input, as MLflow asks for (it warns on every log without one): shown in the
            # UI and checked against the signature at logging. Not without a signature: MLflow would infer one from
            # the example, where the caller asked for none.
            log_kwargs["input_example"] = sample
        logger.info(
            "Logging the inference pipeline as MLflow model %r of run %s (%d artifacts: %s)",
            options.name,
            source_run_id,
            len(artifact_paths),
            ", ".join(sorted(artifact_paths)),
        )
        model_id = _log_model(
            client,
            model,
            name=options.name,
            artifacts=artifact_paths,
            signature=resolved_signature,
            tags=tags,
            log_kwargs=log_kwargs,
            experiment_id=experiment_id,
            run_id=source_run_id,
            linked_externally=active is None,
        )
    refuse_taken_name(client, experiment_id, source_run_id, options.name, token, logged_model_id=model_id)
    if token is not None and options.registered_model_name is None:
        # When registering, the version decides which racer's model stays (register_logged_model).
        model_id = reconcile_logged_models(client, experiment_id, token, model_id)

    result = ModelifyResult(
        model_uri=f"models:/{model_id}",
        run_id=source_run_id,
        experiment_id=experiment_id,
        model_id=model_id,
        run_url=tracking.run_url(experiment_id, source_run_id) if tracking is not None else None,
    )
    if options.registered_model_name is not None:
        try:
            register_logged_model(result, options.registered_model_name, alias_list, tags=tags, client=client,
                                  tracking=tracking)  # fmt: skip
        except BaseException:
            if token is not None:
                logger.warning(
                    "Registering failed; model %s stays logged so that a retry with the same idempotency key "
                    "registers it instead of logging another one.",
                    result.model_id,
                )
            else:
                delete_logged_model(client, model_id)
            raise
    return result


def register_logged_model(
    result: ModelifyResult,
    registered_model_name: str,
    aliases: Sequence[str],
    *,
    tags: Mapping[str, str],
    client: MlflowClient,
    tracking: TrackingConfig | None = None,
) -> ModelifyResult:
    """Register ``result``'s logged model as a version of ``registered_model_name`` (once per key) and set aliases.

    Updates ``result`` in place and returns it. When the version registered for the idempotency key holds another
    logged model (an earlier or racing try's), that one is the result and this try's own model is deleted, so one
    READY model stays per key, the one the version points to.
    """
    if result.model_id is None:
        raise MlflowRunNotFoundError(f"{result.model_uri} has no logged model id to register.")
    version = register_version(client, result.model_id, registered_model_name, tags=dict(tags))
    winner_model_id = version_model_id(version)
    if IDEMPOTENCY_TAG in tags and winner_model_id not in (None, result.model_id):
        logger.warning(
            "Version %s of %r holds model %s, logged for the same task by another try; deleting this try's model %s.",
            version.version,
            registered_model_name,
            winner_model_id,
            result.model_id,
        )
        delete_logged_model(client, result.model_id)
        result.model_id = winner_model_id
        if version.run_id and version.run_id != result.run_id:
            result.run_id = version.run_id
            result.run_url = tracking.run_url(result.experiment_id, version.run_id) if tracking is not None else None
    set_aliases(client, registered_model_name, str(version.version), aliases)
    result.registered_model_name = registered_model_name
    result.version = str(version.version)
    result.aliases = list(aliases)
    result.model_uri = f"models:/{registered_model_name}/{version.version}"
    if tracking is not None:
        result.model_version_url = tracking.model_version_url(registered_model_name, str(version.version))
    return result


def refuse_taken_name(
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    name: str,
    token: str | None,
    *,
    logged_model_id: str | None = None,
) -> None:
    """Refuse a second logged model named ``name`` in run ``run_id``: ``runs:/<run>/<name>`` must name one model.

    MLflow accepts two models of one name in a run and then resolves ``runs:/<run>/<name>`` to the later one, silently
    (the Kedro hook's model, then ``modelify --run-id`` on the same run). Models of the same idempotency ``token`` are
    not a conflict: they are this task's own tries, reused or reconciled elsewhere; FAILED models are leftovers.
    Called before logging, and again after with ``logged_model_id`` (ours): of two racing tasks the later model is
    deleted and its task gets this error, so the earlier one stays the only model of that name.

    :raises MlflowRunConflictError: naming the run, the name, the model already there and the ways out.
    """
    others = [
        model
        for model in search_logged_models(client, experiment_id, f"source_run_id = '{run_id}'")
        if model.name == name
        and model.model_id != logged_model_id
        and (is_ready(model) or is_pending(model))
        and (token is None or model.tags.get(IDEMPOTENCY_TAG) != token)
    ]
    if logged_model_id is not None:
        own = client.get_logged_model(logged_model_id)
        others = [model for model in others if (model.creation_timestamp, model.model_id) < (
            own.creation_timestamp, own.model_id)]  # fmt: skip
    if not others:
        return
    existing = min(others, key=lambda model: (model.creation_timestamp, model.model_id))
    if logged_model_id is not None:
        delete_logged_model(client, logged_model_id)
    raise MlflowRunConflictError(
        f"MLflow run {run_id} already has a logged model named {name!r} ({existing.model_id}), so this model was not "
        f"logged: runs:/{run_id}/{name} would then load whichever was logged last. Give this one another name "
        f"(log_model_kwargs={{'name': '{name}_2'}}, CLI --model-name {name}_2), log it into a new run (drop run_id / "
        f"--run-id), or delete the existing one first (MlflowClient().delete_logged_model({existing.model_id!r}))."
    )


def _log_model(
    client: MlflowClient,
    model: KedroPipelineModel,
    *,
    name: str,
    artifacts: Mapping[str, str],
    signature: ModelSignature | None,
    tags: Mapping[str, str],
    log_kwargs: Mapping[str, Any],
    experiment_id: str,
    run_id: str,
    linked_externally: bool,
) -> str:
    """Log the model; return its id. A failure deletes the logged model, so nothing half-logged stays behind.

    The logged model is created here, with the run as its source, so its id is known before anything is uploaded
    (and a failure deletes exactly it, never a racing try's model). ``linked_externally``: the run is not active
    in this process, so it is linked to the model as an output by hand instead of letting MLflow resume the run
    (which would set it RUNNING and rewrite its end time).
    """
    import mlflow
    from mlflow.entities import LoggedModelOutput

    model_id = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=dict(tags) or None
    ).model_id
    try:
        if linked_externally:  # before the upload, as MLflow itself links a model to the run it is logged in
            client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        mlflow.pyfunc.log_model(
            name=name,
            python_model=model,
            artifacts=dict(artifacts),
            signature=signature,
            model_id=model_id,
            **log_kwargs,
        )
    except BaseException:
        delete_logged_model(client, model_id)
        raise
    return str(model_id)


def _resolve_signature(
    requested: Any,
    *,
    recorded: ModelSignature | None,
    input_data: Any,
    model: KedroPipelineModel,
    catalog: CatalogProtocol | None,
) -> ModelSignature | None:
    """Turn ``signature="auto"`` into a signature: the one training recorded, else inferred from the input data.

    Its ``runner`` param defaults to the model's own runner (a recorded signature has ``SequentialRunner``).
    """
    from airflow_kedro_mlflow.model.kedro_pipeline_model import RUNNER_PARAM
    from airflow_kedro_mlflow.model.signature import with_runner_default

    if not (isinstance(requested, str) and requested == "auto"):
        return requested
    if recorded is not None:
        return recorded if RUNNER_PARAM in model.param_names else with_runner_default(recorded, model.runner_name)
    if catalog is None:
        logger.warning(
            "signature='auto': the model has no catalog to read %r and its params from, so it is logged without a "
            "signature. Pass log_model_kwargs={'signature': ...}.",
            model.input_name,
        )
        return None
    from airflow_kedro_mlflow.model import infer_model_signature

    if input_data is None:
        input_data = _load_input_data(catalog, model.input_name)
    if input_data is None:
        logger.warning(
            "signature='auto': dataset %r cannot be loaded from the catalog (not persisted, or not written yet), so "
            "the model is logged without a signature and its params cannot be overridden at predict time. Persist "
            "%r in the catalog, or pass log_model_kwargs={'signature': ...}.",
            model.input_name,
            model.input_name,
        )
        return None
    return infer_model_signature(input_data, model.inference, catalog, runner=model.runner_name)


def _load_input_data(catalog: CatalogProtocol, input_name: str) -> Any:
    from kedro.io import MemoryDataset

    if input_name not in catalog:
        return None
    dataset = catalog.get(input_name) if hasattr(catalog, "get") else None
    if isinstance(dataset, MemoryDataset):
        return None
    if dataset is not None and hasattr(dataset, "exists") and not dataset.exists():
        return None
    return catalog.load(input_name)


#: Rows of the training input the model predicts on before it is logged.
_SMOKE_TEST_ROWS = 5


def _sample_rows(
    model: KedroPipelineModel, *, input_data: Any, catalog: CatalogProtocol | None, input_example: Any
) -> Any:
    """A few rows of the training input: from ``input_data``, else ``input_example``, else the catalog's input_name.

    None when there is none (a MemoryDataset input, nothing written yet, a dataset that cannot load now).
    """
    sample = input_data if input_data is not None else input_example
    if sample is None and catalog is not None:
        try:
            sample = _load_input_data(catalog, model.input_name)
        except Exception as exc:  # the sample is a bonus: a dataset that cannot load now must not block logging
            logger.info("No test prediction: %r could not be loaded (%s).", model.input_name, exc)
            return None
    if sample is None:
        logger.info("No test prediction and no input example: no data for %r (not persisted, or not written yet).",
                    model.input_name)  # fmt: skip
        return None
    if hasattr(sample, "iloc"):  # pandas
        return sample.iloc[:_SMOKE_TEST_ROWS].copy()
    if getattr(sample, "ndim", 0) >= 1 or isinstance(sample, list):  # numpy, lists
        return sample[:_SMOKE_TEST_ROWS]
    if hasattr(sample, "limit"):  # Spark
        return sample.limit(_SMOKE_TEST_ROWS)
    return sample


def _is_example(sample: Any) -> bool:
    """Whether MLflow can store ``sample`` as an input example (pandas, numpy, lists; not a Spark DataFrame)."""
    if sample is None:
        return False
    return hasattr(sample, "iloc") or (hasattr(sample, "ndim") and hasattr(sample, "dtype")) or isinstance(sample, list)


def _smoke_test(model: KedroPipelineModel, artifact_paths: Mapping[str, str], sample: Any) -> None:
    """Load a copy of the model as MLflow will and predict on ``sample`` (see :func:`_sample_rows`): refuse a model
    that can never predict (a param of the wrong type, an artifact that does not load) before anything is logged.

    Without a sample the test is skipped. The copy goes through the model's pickling, as the logged model will, and
    the model that is logged stays unloaded.

    :raises KedroPipelineModelError: naming the failing node and its error.
    """
    import copy
    import traceback

    import mlflow.pyfunc

    from airflow_kedro_mlflow.exceptions import AirflowKedroMlflowError, KedroPipelineModelError

    if sample is None:
        return
    probe = copy.copy(model)  # through __getstate__/__setstate__, as MLflow pickles the model
    try:
        probe.load_context(mlflow.pyfunc.PythonModelContext(artifacts=dict(artifact_paths), model_config={}))
    except AirflowKedroMlflowError:
        raise  # already names the artifact and the fix
    except Exception as exc:
        raise KedroPipelineModelError(
            f"The model cannot load its artifacts, so it was not logged: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        probe.predict(None, sample)
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, KedroPipelineModelError) and exc.__cause__ is not None else exc
        functions = {getattr(node.func, "__code__", None): node.name for node in model.inference.nodes}
        nodes = [functions[frame.f_code] for frame, _ in traceback.walk_tb(cause.__traceback__)
                 if frame.f_code in functions]  # fmt: skip
        where = f"node {nodes[-1]!r}" if nodes else "the inference pipeline"
        raise KedroPipelineModelError(
            f"The model cannot predict, so it was not logged: a test prediction on rows of {model.input_name!r} "
            f"failed in {where} with {type(cause).__name__}: {cause}. Check the params it reads (a runtime param of "
            "the wrong type?) and the artifacts training produced, then run modelify again."
        ) from exc
