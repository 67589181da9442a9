"""Build a ``KedroPipelineModel`` from a Kedro project and log (and optionally register) it in MLflow.

This module is the one place that does so: the ``airflow-kedro-mlflow modelify`` CLI, the Kedro hook run after
``kedro run`` and the Airflow ``KedroModelifyOperator`` all end up in :func:`log_pipeline_model`, so a model logged
by any of them has the same artifacts, signature, requirements and tags.

:func:`modelify` is the entry point for callers that start from a project on disk (the CLI and the operator): it opens
a Kedro session, takes the artifacts from the training task when given one (local copy when its sha256 matches, else
MLflow's copy), picks or creates the MLflow run and guarantees that a failed call leaves nothing half-logged behind.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import logging
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature

from airflow_kedro_mlflow.exceptions import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    KedroPipelineModelError,
    KedroProjectError,
    MlflowConnectionError,
    MlflowRunNotFoundError,
    ModelRegistrationError,
    PipelineMLError,
)
from airflow_kedro_mlflow.tracking import get_or_create_experiment, strip_userinfo

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from mlflow import MlflowClient

    from airflow_kedro_mlflow.tracking import TrackingConfig
    from airflow_kedro_mlflow.training_result import TrainingResult

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "model"
"""Name of the logged model inside its run (MLflow 3's ``name``, kedro-mlflow's ``artifact_path``)."""

IDEMPOTENCY_TAG = "airflow_kedro_mlflow.idempotency_key"
"""Tag on logged models and model versions: sha256 of the idempotency key, so a retry finds what it logged."""

TRAINING_RUN_TAG = "airflow_kedro_mlflow.training_run_id"
"""Tag on logged models and model versions: the MLflow run whose artifacts the model was built from."""

KEDRO_ENV_TAG = "kedro.env"
KEDRO_PIPELINE_TAG = "kedro.pipeline_name"
GIT_SHA_TAG = "git.sha"

# `mlflow.pyfunc.log_model` arguments that this module sets itself: a user value would silently break the model.
_RESERVED_LOG_MODEL_KWARGS = frozenset({"python_model", "artifacts", "loader_module", "data_path", "model_id"})
_ALIAS_PATTERN = re.compile(r"^[\w\-]+$")
_VERSION_LIKE_ALIAS = re.compile(r"^[vV]\d+$")
_TERMINAL_RUN_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})


@dataclass
class ModelifyResult:
    """What a logged (and maybe registered) model is and where to find it; JSON-safe for Airflow's XCom.

    ``model_uri`` loads this exact model: ``models:/<name>/<version>`` when registered, else ``models:/<model_id>``.
    ``reused`` is true when an earlier try with the same idempotency key had already logged it.
    """

    model_uri: str
    run_id: str
    experiment_id: str
    registered_model_name: str | None = None
    version: str | None = None
    aliases: list[str] = field(default_factory=list)
    model_id: str | None = None
    run_url: str | None = None
    model_version_url: str | None = None
    reused: bool = False

    def to_xcom(self) -> dict[str, Any]:
        """Return a plain dict (JSON types only) for XCom and ``--json`` output."""
        return asdict(self)


@dataclass(frozen=True)
class _LogOptions:
    """``log_model_kwargs`` checked and split into what we handle and what goes to ``mlflow.pyfunc.log_model``."""

    name: str
    signature: Any
    registered_model_name: str | None
    passthrough: dict[str, Any]


# --------------------------------------------------------------------------------------------------------------------
# Validation at the boundary: everything here runs before any side effect.
# --------------------------------------------------------------------------------------------------------------------


def validate_registered_model_name(name: str) -> str:
    """Return ``name`` if MLflow's registry accepts it, else raise :class:`ModelRegistrationError`.

    MLflow checks the same rules server-side, but only after the model was logged; checking first means a typo never
    leaves a logged-but-unregistered model behind.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelRegistrationError(
            f"registered_model_name={name!r} is empty. Pass a name such as 'kedro_classifier', or None to log the "
            "model without registering it."
        )
    bad = sorted({char for char in name if char in "/:"})
    normalised = posixpath.normpath(name)
    if bad or normalised != name or normalised.startswith((".", "/")):
        raise ModelRegistrationError(
            f"registered_model_name={name!r} is not a valid MLflow registered model name: it must not contain "
            f"'/' or ':' nor be a relative path{f' (found {bad})' if bad else ''}. Use letters, digits, '_', '-' or "
            "'.', e.g. 'kedro_classifier'."
        )
    return name


def validate_aliases(aliases: Sequence[str], registered_model_name: str | None) -> list[str]:
    """Return the aliases, deduplicated in order, or raise :class:`ModelRegistrationError` naming the bad one."""
    if isinstance(aliases, str):
        aliases = [aliases]
    result: list[str] = []
    for alias in aliases:
        if not isinstance(alias, str) or not _ALIAS_PATTERN.match(alias) or len(alias) > 255:
            raise ModelRegistrationError(
                f"alias {alias!r} is not a valid MLflow model alias: use 1-255 letters, digits, '_' or '-', "
                "e.g. 'champion' or 'challenger'."
            )
        if alias.lower() == "latest" or _VERSION_LIKE_ALIAS.match(alias):
            raise ModelRegistrationError(
                f"alias {alias!r} is reserved by MLflow ('latest' and 'v<number>' name versions). "
                "Pick another name, e.g. 'champion' or 'challenger'."
            )
        if alias not in result:
            result.append(alias)
    if result and registered_model_name is None:
        raise ModelRegistrationError(
            f"aliases {result} need a registered model: pass registered_model_name as well, or drop the aliases "
            "to only log the model."
        )
    return result


def _log_model_parameters() -> set[str]:
    """Parameters ``mlflow.pyfunc.log_model`` accepts in the installed MLflow (the source of truth)."""
    return set(inspect.signature(mlflow.pyfunc.log_model).parameters)


def normalize_log_model_kwargs(
    log_model_kwargs: Mapping[str, Any] | None, registered_model_name: str | None = None
) -> _LogOptions:
    """Check ``log_model_kwargs`` as kedro-mlflow projects write them and map them onto MLflow 3.

    ``artifact_path`` (MLflow 2's and kedro-mlflow's word) is MLflow 3's ``name``; ``signature="auto"`` (the default)
    infers the signature from the training input data and the inference pipeline's ``params:`` inputs;
    ``registered_model_name`` here is used when the caller did not pass one. Unknown keys fail with close matches
    instead of reaching ``log_model`` as a ``TypeError``.
    """
    kwargs = dict(log_model_kwargs or {})
    accepted = _log_model_parameters()
    reserved = sorted(set(kwargs) & _RESERVED_LOG_MODEL_KWARGS)
    if reserved:
        raise KedroPipelineModelError(
            f"log_model_kwargs {reserved} are set by airflow-kedro-mlflow itself (the KedroPipelineModel and its "
            "artifacts); remove them from log_model_kwargs."
        )
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        hints = {key: difflib.get_close_matches(key, sorted(accepted), n=1) for key in unknown}
        hint_text = "; ".join(f"{key!r}: did you mean {match[0]!r}?" for key, match in hints.items() if match)
        raise KedroPipelineModelError(
            f"log_model_kwargs {unknown} are not arguments of mlflow.pyfunc.log_model. "
            f"{hint_text + '. ' if hint_text else ''}Accepted: {sorted(accepted - _RESERVED_LOG_MODEL_KWARGS)}."
        )

    artifact_path = kwargs.pop("artifact_path", None)
    name = kwargs.pop("name", None)
    if artifact_path is not None and name is not None and artifact_path != name:
        raise KedroPipelineModelError(
            f"log_model_kwargs set both artifact_path={artifact_path!r} and name={name!r}: MLflow 3 calls "
            "artifact_path 'name'; keep one of them."
        )
    model_name = name or artifact_path or DEFAULT_MODEL_NAME
    if not isinstance(model_name, str) or "/" in model_name or ":" in model_name:
        raise KedroPipelineModelError(
            f"model name {model_name!r} (log_model_kwargs 'name'/'artifact_path') must be a plain name without "
            "'/' or ':', e.g. 'model'."
        )

    kwarg_registered = kwargs.pop("registered_model_name", None)
    if registered_model_name is not None and kwarg_registered not in (None, registered_model_name):
        raise ModelRegistrationError(
            f"registered_model_name={registered_model_name!r} differs from log_model_kwargs' "
            f"registered_model_name={kwarg_registered!r}; pass only one of them."
        )
    final_registered = registered_model_name if registered_model_name is not None else kwarg_registered
    if final_registered is not None:
        validate_registered_model_name(final_registered)

    signature = kwargs.pop("signature", "auto")
    if isinstance(signature, str) and signature != "auto":
        raise KedroPipelineModelError(
            f"log_model_kwargs signature={signature!r} is not understood: use 'auto' (infer it from the training "
            "input data and params), None (no signature), a mlflow.models.ModelSignature or its to_dict()."
        )
    if isinstance(signature, Mapping):
        signature = ModelSignature.from_dict(dict(signature))
    environment = sorted(k for k in ("conda_env", "pip_requirements", "extra_pip_requirements") if kwargs.get(k))
    if len(environment) > 1:
        raise KedroPipelineModelError(
            f"log_model_kwargs set {' and '.join(environment)}; MLflow accepts only one of them. Use "
            "extra_pip_requirements alone to add to the pinned defaults, pip_requirements or conda_env to replace them."
        )
    return _LogOptions(name=model_name, signature=signature, registered_model_name=final_registered, passthrough=kwargs)


def idempotency_token(idempotency_key: Mapping[str, Any]) -> str:
    """Return the sha256 of the key's canonical JSON: one tag value to search for, whatever the key holds."""
    if not idempotency_key:
        raise ValueError("idempotency_key is empty: pass e.g. {'dag_id': ..., 'dag_run_id': ..., 'run_id': ...}.")
    canonical = json.dumps({str(k): str(v) for k, v in idempotency_key.items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _mlflow_error_code(exc: MlflowException) -> str:
    return getattr(exc, "error_code", "") or ""


def _same_tracking_uri(left: str, right: str) -> bool:
    """Compare two tracking URIs as MLflow would reach them (credentials, case of the host and trailing '/' aside)."""

    def canonical(uri: str) -> str:
        uri = strip_userinfo(uri).rstrip("/")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return uri
        host, slash, path = rest.partition("/")
        return f"{scheme.lower()}://{host.lower()}{slash}{path}"

    return canonical(left) == canonical(right)


# --------------------------------------------------------------------------------------------------------------------
# Artifacts produced by a training task.
# --------------------------------------------------------------------------------------------------------------------


def resolve_training_artifacts(
    training: TrainingResult, download_dir: str | Path, tracking_uri: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({name: local path}, {name: sha256})`` for every artifact a training task recorded.

    The local file is used when it exists and its sha256 is the one training recorded (same worker, shared disk).
    When it does not exist here (another worker, a scratch dir that is gone), MLflow's copy is downloaded into
    ``download_dir`` and its hash checked. A hash that differs is an error, never a silent fallback: it means the
    file was modified (or overwritten by another run) after training.
    """
    from airflow_kedro_mlflow.model import sha256_path

    paths: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for name in sorted(training.artifacts):
        record = training.artifacts[name]
        local = Path(record.path) if record.path else None
        if local is not None and local.exists():
            actual = sha256_path(local)
            if actual != record.sha256:
                raise ArtifactIntegrityError(
                    f"artifact {name!r} at {local} has sha256 {actual}, but MLflow run {training.run_id} recorded "
                    f"{record.sha256}. The file changed after training (or another run overwrote it): re-run the "
                    "training task, or pass the training result of the run that made this file."
                )
            paths[name], hashes[name] = str(local), actual
            continue
        if not record.uri:
            raise ArtifactNotFoundError(
                f"artifact {name!r}: {record.path} does not exist here and the training result has no MLflow URI "
                "to download it from. Run modelify where training wrote its files, or re-run the training task."
            )
        target = Path(download_dir) / _safe_dir_name(name)
        target.mkdir(parents=True, exist_ok=True)
        logger.info("Artifact %r is not on this machine (%s): downloading %s", name, record.path, record.uri)
        try:
            downloaded = mlflow.artifacts.download_artifacts(
                artifact_uri=record.uri, dst_path=str(target), tracking_uri=tracking_uri
            )
        except MlflowException as exc:
            raise ArtifactNotFoundError(
                f"artifact {name!r}: {record.path} does not exist here and downloading {record.uri} from MLflow "
                f"failed: {exc.message}. Check the training run {training.run_id} still has it, or re-run training."
            ) from exc
        actual = sha256_path(downloaded)
        if actual != record.sha256:
            raise ArtifactIntegrityError(
                f"artifact {name!r} downloaded from {record.uri} to {downloaded} has sha256 {actual}, but MLflow run "
                f"{training.run_id} recorded {record.sha256}. The stored copy was modified after training: re-run "
                "the training task."
            )
        paths[name], hashes[name] = str(downloaded), actual
    return paths, hashes


def _safe_dir_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


# --------------------------------------------------------------------------------------------------------------------
# Build and log: the one place.
# --------------------------------------------------------------------------------------------------------------------


def log_pipeline_model(
    pipeline: Pipeline,
    catalog: CatalogProtocol,
    *,
    input_name: str | None = None,
    registered_model_name: str | None = None,
    aliases: Sequence[str] = (),
    copy_mode: str | Mapping[str, str] | None = None,
    kpm_kwargs: Mapping[str, Any] | None = None,
    log_model_kwargs: Mapping[str, Any] | None = None,
    artifacts: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
    input_data: Any = None,
    signature: ModelSignature | None = None,
    project_package: str | None = None,
    mlflow_tags: Mapping[str, Any] | None = None,
    idempotency_key: Mapping[str, Any] | None = None,
    tracking: TrackingConfig | None = None,
) -> ModelifyResult:
    """Log the inference pipeline of ``pipeline`` as a ``KedroPipelineModel`` into the active MLflow run.

    The caller owns the run (``mlflow.start_run`` before, ``end_run`` after) and the tracking URIs; this function
    logs the model, registers a version when ``registered_model_name`` is given (also from ``log_model_kwargs``) and
    moves ``aliases`` onto it. If logging fails, the partially created logged model is deleted and no version is
    registered.

    :param pipeline: a ``PipelineML`` (ours or kedro-mlflow's: anything with ``inference`` and ``input_name``), or a
        plain inference ``Pipeline`` together with ``input_name``.
    :param catalog: the catalog the artifacts are read from (the project's, or the run's after ``kedro run``).
    :param artifacts: ``({name: local path}, {name: sha256})`` fetched elsewhere (see
        :func:`resolve_training_artifacts`); else the artifacts are extracted from ``catalog`` and must exist.
    :param input_data: training input data for ``signature="auto"``; loaded from ``catalog`` when None.
    :param signature: a signature recorded at training time, used for ``signature="auto"`` before inferring one.
    :param project_package: the Kedro project's package, shipped with ``code_paths`` and used for requirements.
    :param mlflow_tags: tags for the logged model and the model version (the run's tags are the caller's).
    :param idempotency_key: recorded (hashed) as a tag so :func:`modelify` can find this model on a retry.
    :param tracking: only used for browser links in the result.
    :raises ArtifactNotFoundError: an artifact is not persisted or its file does not exist yet.
    :raises ModelRegistrationError: the name or an alias is invalid, or the registry refused the version.
    """
    from airflow_kedro_mlflow.model import KedroPipelineModel

    options = normalize_log_model_kwargs(log_model_kwargs, registered_model_name)
    alias_list = validate_aliases(aliases, options.registered_model_name)
    active = mlflow.active_run()
    if active is None:
        raise MlflowRunNotFoundError(
            "log_pipeline_model needs an active MLflow run: call it inside mlflow.start_run(), or use modelify() "
            "which starts one."
        )

    model_kwargs: dict[str, Any] = dict(kpm_kwargs or {})
    if copy_mode is not None:
        model_kwargs["copy_mode"] = copy_mode
    if input_name is not None:
        model_kwargs["input_name"] = input_name
    model = KedroPipelineModel(pipeline, catalog, **model_kwargs)
    resolved_input_name = model.input_name

    tags = {str(k): str(v) for k, v in (mlflow_tags or {}).items() if v is not None}
    if idempotency_key:
        tags[IDEMPOTENCY_TAG] = idempotency_token(idempotency_key)

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

        resolved_signature = _resolve_signature(
            options.signature,
            recorded=signature,
            input_data=input_data,
            input_name=resolved_input_name,
            inference=model.inference,
            catalog=catalog,
        )
        log_kwargs = _with_default_environment(options.passthrough, project_package)
        client = mlflow.MlflowClient()
        run_id = active.info.run_id
        before = _logged_model_ids(client, active.info.experiment_id, run_id)
        logger.info(
            "Logging the inference pipeline as MLflow model %r in run %s (%d artifacts: %s)",
            options.name,
            run_id,
            len(artifact_paths),
            ", ".join(sorted(artifact_paths)),
        )
        try:
            model_info = mlflow.pyfunc.log_model(
                name=options.name,
                python_model=model,
                artifacts=artifact_paths,
                signature=resolved_signature,
                tags=tags or None,
                **log_kwargs,
            )
        except Exception:
            _delete_new_logged_models(client, active.info.experiment_id, run_id, before)
            raise

    result = ModelifyResult(
        model_uri=model_info.model_uri,
        run_id=run_id,
        experiment_id=active.info.experiment_id,
        model_id=model_info.model_id,
        run_url=_run_url(tracking, active.info.experiment_id, run_id),
    )
    if options.registered_model_name is not None:
        try:
            register_logged_model(
                result,
                options.registered_model_name,
                alias_list,
                tags=tags,
                client=client,
                tracking=tracking,
            )
        except Exception:
            if idempotency_key:
                logger.warning(
                    "Registering failed; model %s stays logged so that a retry with the same idempotency key "
                    "registers it instead of logging another one.",
                    result.model_id,
                )
            else:
                _delete_logged_model(client, model_info.model_id)
            raise
    return result


def _resolve_signature(
    requested: Any,
    *,
    recorded: ModelSignature | None,
    input_data: Any,
    input_name: str,
    inference: Pipeline,
    catalog: CatalogProtocol,
) -> ModelSignature | None:
    """Turn ``signature="auto"`` into a signature: the one training recorded, else inferred from the input data."""
    if requested != "auto":
        return requested
    if recorded is not None:
        return recorded
    from airflow_kedro_mlflow.model import infer_model_signature

    if input_data is None:
        input_data = _load_input_data(catalog, input_name)
    if input_data is None:
        logger.warning(
            "signature='auto': dataset %r cannot be loaded from the catalog (not persisted, or not written yet), so "
            "the model is logged without a signature and its params cannot be overridden at predict time. Persist "
            "%r in the catalog, or pass log_model_kwargs={'signature': ...}.",
            input_name,
            input_name,
        )
        return None
    return infer_model_signature(input_data, inference, catalog)


def _load_input_data(catalog: CatalogProtocol, input_name: str) -> Any:
    from kedro.io import MemoryDataset

    if input_name not in catalog:
        return None
    dataset = catalog.get(input_name) if hasattr(catalog, "get") else None
    if isinstance(dataset, MemoryDataset):
        return None
    if hasattr(dataset, "exists") and not dataset.exists():
        return None
    return catalog.load(input_name)


def _with_default_environment(passthrough: Mapping[str, Any], project_package: str | None) -> dict[str, Any]:
    """Ship the project's package and pin kedro/kedro-datasets/mlflow unless the user chose otherwise.

    MLflow's own requirement inference loads the model in a subprocess and often misses kedro's dataset plugins; a
    pinned list is faster and gives a model that loads where the project is not installed.
    """
    from airflow_kedro_mlflow.model import default_pip_requirements

    kwargs = dict(passthrough)
    if kwargs.get("conda_env") is None and kwargs.get("pip_requirements") is None:
        # MLflow refuses extra_pip_requirements next to pip_requirements: fold the extras into the pinned list.
        extra = _requirement_lines(kwargs.pop("extra_pip_requirements", None))
        defaults = default_pip_requirements(project_package)
        kwargs["pip_requirements"] = defaults + [line for line in extra if line not in defaults]
    if kwargs.get("code_paths") is None and project_package:
        from airflow_kedro_mlflow.model.requirements import model_code_paths

        kwargs["code_paths"] = model_code_paths(project_package)
    return kwargs


def _requirement_lines(requirements: str | Sequence[str] | None) -> list[str]:
    """A requirements list, or the lines of a requirements file (comments and blank lines dropped)."""
    if requirements is None:
        return []
    if isinstance(requirements, str | Path):
        lines = Path(requirements).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [str(line) for line in requirements]


def _logged_model_ids(client: MlflowClient, experiment_id: str, run_id: str) -> set[str]:
    return {model.model_id for model in _search_logged_models(client, experiment_id, f"source_run_id = '{run_id}'")}


def _search_logged_models(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Any]:
    models: list[Any] = []
    page_token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=filter_string, page_token=page_token
        )
        models.extend(page)
        page_token = page.token
        if not page_token:
            return models


def _delete_new_logged_models(client: MlflowClient, experiment_id: str, run_id: str, before: set[str]) -> None:
    """Delete the logged models a failed ``log_model`` left in the run (MLflow marks them FAILED, not gone)."""
    try:
        new = sorted(_logged_model_ids(client, experiment_id, run_id) - before)
    except MlflowException as exc:
        logger.warning("Could not look for the partially logged model of run %s: %s", run_id, exc.message)
        return
    for model_id in new:
        _delete_logged_model(client, model_id)


def _delete_logged_model(client: MlflowClient, model_id: str) -> None:
    """Best-effort cleanup after a failure: the original error matters more than a failed delete."""
    try:
        client.delete_logged_model(model_id)
        logger.info("Deleted logged model %s left by a failed modelify", model_id)
    except MlflowException as exc:
        logger.warning("Could not delete logged model %s after a failed modelify: %s", model_id, exc.message)


def register_logged_model(
    result: ModelifyResult,
    registered_model_name: str,
    aliases: Sequence[str],
    *,
    tags: Mapping[str, str],
    client: MlflowClient,
    tracking: TrackingConfig | None = None,
) -> ModelifyResult:
    """Register ``result``'s logged model as a version of ``registered_model_name`` (or reuse one) and set aliases.

    With an idempotency tag, a version already registered for it is reused: a retry never makes a second version.
    Updates ``result`` in place and returns it.
    """
    token = tags.get(IDEMPOTENCY_TAG)
    version = _find_version(client, registered_model_name, token) if token else None
    if version is None:
        try:
            version = mlflow.register_model(
                f"models:/{result.model_id}", registered_model_name, tags=dict(tags) or None
            )
        except (MlflowException, OSError) as exc:
            raise ModelRegistrationError(
                f"could not register model {result.model_id} as {registered_model_name!r} in the MLflow registry: "
                f"{getattr(exc, 'message', None) or exc}. Check the registry URI and that the registry is reachable, "
                "then retry."
            ) from exc
    else:
        logger.info("Reusing version %s of %r registered by an earlier try", version.version, registered_model_name)
    for alias in aliases:
        try:
            client.set_registered_model_alias(registered_model_name, alias, version.version)
        except MlflowException as exc:
            raise ModelRegistrationError(
                f"could not set alias {alias!r} on version {version.version} of {registered_model_name!r}: "
                f"{exc.message}"
            ) from exc
    result.registered_model_name = registered_model_name
    result.version = str(version.version)
    result.aliases = list(aliases)
    result.model_uri = f"models:/{registered_model_name}/{version.version}"
    if tracking is not None:
        result.model_version_url = tracking.model_version_url(registered_model_name, str(version.version))
    return result


def _find_version(client: MlflowClient, registered_model_name: str, token: str) -> Any:
    escaped = registered_model_name.replace("'", "\\'")
    try:
        versions = client.search_model_versions(f"name = '{escaped}' AND tags.`{IDEMPOTENCY_TAG}` = '{token}'")
    except MlflowException as exc:
        if _mlflow_error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    candidates = [v for v in versions if v.status == "READY"] or list(versions)
    return min(candidates, key=lambda v: int(v.version)) if candidates else None


def _find_logged_model(client: MlflowClient, experiment_id: str, token: str) -> Any:
    models = _search_logged_models(client, experiment_id, f"tags.`{IDEMPOTENCY_TAG}` = '{token}'")
    ready = [m for m in models if str(m.status).upper().endswith("READY")]
    return min(ready, key=lambda m: m.creation_timestamp) if ready else None


def _run_url(tracking: TrackingConfig | None, experiment_id: str, run_id: str) -> str | None:
    return tracking.run_url(experiment_id, run_id) if tracking is not None else None


# --------------------------------------------------------------------------------------------------------------------
# modelify: from a project on disk.
# --------------------------------------------------------------------------------------------------------------------


def modelify(
    project_path: str | Path | None,
    pipeline_name: str | None,
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

    :param project_path: the Kedro project root.
    :param pipeline_name: a registered pipeline: a ``PipelineML`` (its inference part is logged), or an inference
        pipeline together with ``input_name``.
    :param tracking: where MLflow is; ``TrackingConfig.from_env()`` (``MLFLOW_TRACKING_URI``) when None.
    :param run_id: log into this existing run; with ``training`` and no ``run_id``, the training run is used;
        otherwise a new run named ``run_name`` in ``experiment_name`` (default: the project's package name).
    :param registered_model_name: None logs only; a name also registers a version and sets ``aliases`` on it.
    :param log_model_kwargs: ``mlflow.pyfunc.log_model`` arguments as kedro-mlflow users pass them
        (``artifact_path``/``name``, ``signature="auto"``, ``pip_requirements``, ``code_paths``...), on top of the
        ``PipelineML``'s own ``log_model_kwargs`` (these win key by key).
    :param training: a training task's result: the artifacts are its files (local if their sha256 matches, else
        MLflow's copy) instead of what the catalog points to now, and its signature is reused.
    :param mlflow_tags: tags for the run, the logged model and the model version (e.g. ``airflow.dag_id``).
    :param idempotency_key: e.g. ``{"dag_id", "dag_run_id", "run_id"}``: when a model was already logged (and
        registered) for it, it is reused instead of logging a second one.
    :raises KedroProjectError: not a Kedro project, unknown pipeline or env.
    :raises MlflowRunNotFoundError: ``run_id`` does not exist.
    :raises ArtifactNotFoundError: an artifact was not produced yet ("run the training pipeline first").
    :raises ArtifactIntegrityError: an artifact differs from what training recorded.
    :raises ModelRegistrationError: invalid name or alias, or the registry refused the version.
    """
    from airflow_kedro_mlflow.tracking import TrackingConfig

    tracking = tracking if tracking is not None else TrackingConfig.from_env()
    if (
        training is not None
        and training.tracking_uri
        and not _same_tracking_uri(training.tracking_uri, tracking.tracking_uri)
    ):
        raise MlflowConnectionError(
            f"the training result was logged to {strip_userinfo(training.tracking_uri)} but modelify is "
            f"configured for {strip_userinfo(tracking.tracking_uri)}. Point modelify's MLflow connection at "
            "the training task's tracking server, so the model is logged next to its training run."
        )
    if registered_model_name is not None:
        validate_registered_model_name(registered_model_name)
    alias_list = validate_aliases(aliases, registered_model_name)
    if training is not None:
        # What training really used, unless the caller overrides it: the same project, env and params give the
        # same catalog, and the model is logged next to its training run.
        project_path = project_path or training.project_path
        env = env if env is not None else training.env
        conf_source = conf_source if conf_source is not None else training.conf_source
        runtime_params = runtime_params if runtime_params is not None else training.runtime_params
        run_id = run_id or training.run_id
        input_name = input_name or training.input_name or None
        if idempotency_key:
            # A re-run of training (new run id) must give a new model; a retry of modelify must not.
            idempotency_key = {**idempotency_key, "training_run_id": training.run_id}
        pipeline_name = pipeline_name or training.pipeline_name
    if not project_path or not pipeline_name:
        raise KedroProjectError(
            f"modelify needs a project_path and a pipeline_name (got {project_path!r} and {pipeline_name!r}): pass "
            "them, or pass the training result of a KedroTrainingOperator/run_training."
        )
    token = idempotency_token(idempotency_key) if idempotency_key else None

    with _project_session(
        project_path, pipeline_name, env=env, conf_source=conf_source, runtime_params=runtime_params
    ) as opened:
        pipeline = opened.pipeline
        if not hasattr(pipeline, "inference") and input_name is None:
            raise PipelineMLError(
                f"pipeline {pipeline_name!r} is a plain Pipeline, not a PipelineML, so modelify cannot tell which "
                "dataset receives the data to predict on: pass input_name (--input-name), or register the pipeline "
                "with pipeline_ml_factory."
            )
        # The PipelineML's own log_model_kwargs, overridden key by key by the caller's.
        options_kwargs = {**_pipeline_log_model_kwargs(pipeline), **dict(log_model_kwargs or {})}
        options = normalize_log_model_kwargs(options_kwargs, registered_model_name)
        alias_list = validate_aliases(alias_list, options.registered_model_name)
        catalog = opened.catalog
        kpm_kwargs = dict(getattr(pipeline, "kpm_kwargs", None) or {})
        kpm_kwargs.pop("input_name", None)

        tags = _lineage_tags(mlflow_tags, env=opened.env, pipeline_name=pipeline_name, project_path=project_path)
        if training is not None:
            tags[TRAINING_RUN_TAG] = training.run_id

        with tracking.activate():
            tracking.check_connection()  # an unreachable server fails here, readably, before any side effect
            client = tracking.client()
            experiment_id = _experiment_for(client, run_id, experiment_name or opened.package_name)
            if token is not None:
                reused = _reuse(
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
                artifacts = (
                    resolve_training_artifacts(training, download_dir, tracking_uri=None)
                    if training is not None
                    else None
                )
                recorded_signature = (
                    ModelSignature.from_dict(training.signature)
                    if training is not None and training.signature
                    else None
                )
                with _run_context(client, run_id, experiment_id, run_name, tags):
                    return log_pipeline_model(
                        pipeline,
                        catalog,
                        input_name=input_name,
                        registered_model_name=options.registered_model_name,
                        aliases=alias_list,
                        copy_mode=copy_mode,
                        kpm_kwargs=kpm_kwargs,
                        log_model_kwargs={**options_kwargs, "registered_model_name": None},
                        artifacts=artifacts,
                        signature=recorded_signature,
                        project_package=opened.package_name,
                        mlflow_tags=tags,
                        idempotency_key=idempotency_key,
                        tracking=tracking,
                    )


def _pipeline_log_model_kwargs(pipeline: Pipeline) -> dict[str, Any]:
    return dict(getattr(pipeline, "log_model_kwargs", None) or {})


def _lineage_tags(
    mlflow_tags: Mapping[str, Any] | None, *, env: str | None, pipeline_name: str, project_path: str | Path
) -> dict[str, str]:
    tags = {str(k): str(v) for k, v in (mlflow_tags or {}).items() if v is not None}
    if env:
        tags.setdefault(KEDRO_ENV_TAG, env)
    tags.setdefault(KEDRO_PIPELINE_TAG, pipeline_name)
    if GIT_SHA_TAG not in tags:
        sha = git_sha(project_path)
        if sha:
            tags[GIT_SHA_TAG] = sha
    return tags


def git_sha(path: str | Path) -> str | None:
    """The commit checked out at ``path``, or None when it is not a git work tree (or git is not installed)."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = completed.stdout.strip()
    return sha if completed.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None


def _experiment_for(client: MlflowClient, run_id: str | None, experiment_name: str | None) -> str:
    """The experiment of ``run_id`` (which must exist), else of ``experiment_name`` (created when missing)."""
    if run_id is not None:
        return _get_run(client, run_id).info.experiment_id
    return get_or_create_experiment(client, experiment_name or "Default")


def _get_run(client: MlflowClient, run_id: str) -> Any:
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if _mlflow_error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            raise MlflowRunNotFoundError(
                f"MLflow run {run_id!r} does not exist on this tracking server. Pass the id of an existing run "
                "(see the MLflow UI), or leave run_id unset to log into a new run."
            ) from exc
        raise
    if run.info.lifecycle_stage == "deleted":
        raise MlflowRunNotFoundError(
            f"MLflow run {run_id!r} is deleted. Restore it in the MLflow UI, or leave run_id unset to log into a new "
            "run."
        )
    return run


def _reuse(
    client: MlflowClient,
    *,
    experiment_id: str,
    token: str,
    registered_model_name: str | None,
    aliases: list[str],
    tags: Mapping[str, str],
    tracking: TrackingConfig,
) -> ModelifyResult | None:
    """Return what an earlier try with the same idempotency key logged (registering it if that try could not)."""
    existing = _find_logged_model(client, experiment_id, token)
    if existing is None:
        return None
    logger.info("Reusing model %s logged by an earlier try (idempotency key %s)", existing.model_id, token[:12])
    result = ModelifyResult(
        model_uri=f"models:/{existing.model_id}",
        run_id=existing.source_run_id,
        experiment_id=existing.experiment_id,
        model_id=existing.model_id,
        run_url=tracking.run_url(existing.experiment_id, existing.source_run_id),
        reused=True,
    )
    if registered_model_name is not None:
        register_logged_model(
            result,
            registered_model_name,
            aliases,
            tags={**tags, IDEMPOTENCY_TAG: token},
            client=client,
            tracking=tracking,
        )
    return result


@contextmanager
def _run_context(
    client: MlflowClient, run_id: str | None, experiment_id: str, run_name: str | None, tags: Mapping[str, str]
) -> Iterator[None]:
    """Make the run to log into active, and leave nothing half-done behind if logging fails.

    An existing run is resumed and given back its status afterwards (the training run stays FINISHED), and only gets
    the tags it does not have yet; a run created here is deleted when the body fails, so a failed modelify leaves no
    empty or half-logged run in the experiment. An already active run in this process (modelify called inside
    ``mlflow.start_run()``) is used as is.
    """
    active = mlflow.active_run()
    if active is not None and run_id in (None, active.info.run_id):
        if tags:
            mlflow.set_tags(dict(tags))
        yield
        return
    if run_id is not None:
        existing = _get_run(client, run_id)
        previous_status = existing.info.status
        mlflow.start_run(run_id=run_id)
        final_status = previous_status if previous_status in _TERMINAL_RUN_STATUSES else "FINISHED"
        try:
            # Add lineage the run lacks, never overwrite what training recorded (its task id, try number...).
            missing = {key: value for key, value in tags.items() if key not in existing.data.tags}
            if missing:
                mlflow.set_tags(missing)
            yield
        finally:
            mlflow.end_run(status=final_status)
        return
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags) or None)
    created_run_id = run.info.run_id
    try:
        yield
    except BaseException:
        mlflow.end_run(status="FAILED")
        try:
            client.delete_run(created_run_id)
            logger.info("Deleted MLflow run %s created by this failed modelify", created_run_id)
        except MlflowException as exc:
            logger.warning("Could not delete MLflow run %s after a failed modelify: %s", created_run_id, exc.message)
        raise
    mlflow.end_run()


@dataclass
class _OpenedProject:
    pipeline: Pipeline
    catalog: CatalogProtocol
    env: str | None
    package_name: str


@contextmanager
def _project_session(
    project_path: str | Path,
    pipeline_name: str,
    *,
    env: str | None,
    conf_source: str | None,
    runtime_params: Mapping[str, Any] | None,
) -> Iterator[_OpenedProject]:
    """Open the project with the shared session helper; yield the registered pipeline and the session's catalog."""
    from airflow_kedro_mlflow.kedro_project import get_pipeline, open_session

    with open_session(project_path, env=env, conf_source=conf_source, runtime_params=runtime_params) as session:
        import kedro.framework.project as kedro_project

        pipeline = get_pipeline(session, pipeline_name)
        context = session.load_context()
        yield _OpenedProject(
            pipeline=pipeline,
            catalog=context.catalog,
            env=effective_env(context),
            package_name=str(kedro_project.PACKAGE_NAME),
        )


def effective_env(context: Any) -> str | None:
    """The env Kedro really reads: the one asked for, else the config loader's default run env (``local``)."""
    loader = getattr(context, "config_loader", None)
    return context.env or getattr(loader, "env", None) or getattr(loader, "default_run_env", None) or None


__all__ = [
    "ModelifyResult",
    "log_pipeline_model",
    "modelify",
    "register_logged_model",
    "resolve_training_artifacts",
]
