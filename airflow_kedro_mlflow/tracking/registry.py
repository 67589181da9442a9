"""The MLflow Model Registry and logged models: names, aliases, versions, and registering once per idempotency key.

Registering is race-safe without a lock (MLflow's registry has none): two tries of one task may run at once (a
worker wrongly declared dead), and "find a version for this key, else register one" is check-then-act. So every
registration *reconciles* after registering (:func:`reconcile_version`): the versions carrying the same idempotency
tag are listed, the lowest-numbered one wins, and a racer whose own version lost deletes it and reports the winner.
The registry numbers versions in creation order and creates a version together with its tags, and each racer lists
after its own registration, so every racer that finishes sees the same lowest version; nobody deletes it, since its
owner sees no lower one. Each racer only ever deletes what it created itself.

Logged models without a registration are reconciled the same way (oldest READY wins) by
:func:`reconcile_logged_models`; when a version is registered, the version decides which logged model stays.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_kedro_mlflow.exceptions import ModelRegistrationError
from airflow_kedro_mlflow.tracking.tags import IDEMPOTENCY_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ALIAS_PATTERN = re.compile(r"^[\w\-]+$")
_VERSION_LIKE_ALIAS = re.compile(r"^[vV]\d+$")
_MAX_NAME_LENGTH = 255


def validate_registered_model_name(name: str) -> str:
    """Return ``name`` if it is a registered model name this package accepts, else raise.

    Letters, digits, ``_``, ``-`` and ``.``, as the docs list: MLflow's server accepts more (spaces, unicode), but a
    leading or inner space is a typo that makes ``models:/<name>@alias`` URIs fragile, and a name with ``/`` or
    ``:`` cannot be put in a model URI at all. Checking first means a typo never leaves a logged-but-unregistered
    model behind.

    :raises ModelRegistrationError: naming the offending characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelRegistrationError(
            f"registered_model_name={name!r} is empty. Pass a name such as 'kedro_classifier', or None to log the "
            "model without registering it."
        )
    bad = sorted({char for char in name if not _NAME_PATTERN.match(char)})
    if bad or posixpath.normpath(name) != name or name.startswith(".") or len(name) > _MAX_NAME_LENGTH:
        found = f" (found {', '.join(repr(char) for char in bad)})" if bad else ""
        raise ModelRegistrationError(
            f"registered_model_name={name!r} is not a valid registered model name{found}: use 1-255 letters, "
            "digits, '_', '-' or '.', not starting with '.', e.g. 'kedro_classifier'."
        )
    return name


def validate_aliases(aliases: str | Sequence[str], registered_model_name: str | None) -> list[str]:
    """Return the aliases, deduplicated in order, or raise :class:`ModelRegistrationError` naming the bad one."""
    if isinstance(aliases, str):
        aliases = [aliases]
    result: list[str] = []
    for alias in aliases:
        if not isinstance(alias, str) or not _ALIAS_PATTERN.match(alias) or len(alias) > _MAX_NAME_LENGTH:
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


def register_version(
    client: MlflowClient,
    model_id: str,
    registered_model_name: str,
    *,
    tags: dict[str, str],
) -> ModelVersion:
    """Register logged model ``model_id`` as a version of ``registered_model_name`` exactly once per idempotency tag.

    A version already registered for the same :data:`IDEMPOTENCY_TAG` is reused (it may hold another logged model,
    see :func:`version_model_id`); otherwise one is registered and racing registrations are reconciled (see the
    module docstring).

    :raises ModelRegistrationError: the registry refused the version.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    token = tags.get(IDEMPOTENCY_TAG)
    try:
        if token is not None:
            existing = find_version(client, registered_model_name, token)
            if existing is not None:
                logger.info(
                    "Reusing version %s of %r registered by an earlier try", existing.version, registered_model_name
                )
                return existing
        version = mlflow.register_model(f"models:/{model_id}", registered_model_name, tags=dict(tags) or None)
        if token is None:
            return version
        return reconcile_version(client, registered_model_name, token, version)
    except (MlflowException, OSError) as exc:
        raise ModelRegistrationError(
            f"could not register model {model_id} as {registered_model_name!r} in the MLflow registry: "
            f"{getattr(exc, 'message', None) or exc}. Check the registry URI and that the registry is reachable, "
            "then retry."
        ) from exc


def reconcile_version(client: MlflowClient, registered_model_name: str, token: str, own: ModelVersion) -> ModelVersion:
    """After registering ``own`` for ``token``: return the version every racer agrees on, deleting ``own`` if it lost.

    The winner is the lowest-numbered version carrying the token (see the module docstring for why all racers agree).
    """
    winner = find_version(client, registered_model_name, token)
    if winner is None or str(winner.version) == str(own.version):
        return own
    logger.warning(
        "A racing try registered version %s of %r for the same task first; deleting this try's version %s.",
        winner.version,
        registered_model_name,
        own.version,
    )
    _delete_version(client, registered_model_name, str(own.version))
    return winner


def version_model_id(version: ModelVersion) -> str | None:
    """The id of the logged model ``version`` was registered from, or None when it was not a logged model.

    MLflow's SQL registry does not return ``model_id`` on versions, but the source of a version registered from
    ``models:/<model_id>`` is exactly that URI.
    """
    model_id = getattr(version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(version, "source", "") or "")
    prefix = "models:/"
    if source.startswith(prefix) and "/" not in source[len(prefix) :]:
        return source[len(prefix) :] or None
    return None


def set_aliases(client: MlflowClient, registered_model_name: str, version: str, aliases: Sequence[str]) -> None:
    """Move each alias onto ``version``.

    :raises ModelRegistrationError: the registry refused an alias.
    """
    from mlflow.exceptions import MlflowException

    for alias in aliases:
        try:
            client.set_registered_model_alias(registered_model_name, alias, version)
        except MlflowException as exc:
            raise ModelRegistrationError(
                f"could not set alias {alias!r} on version {version} of {registered_model_name!r}: {exc.message}"
            ) from exc


def find_version(client: MlflowClient, registered_model_name: str, token: str) -> ModelVersion | None:
    """The version registered for idempotency ``token`` (the lowest-numbered one), or None.

    :raises MlflowException: the registry could not be searched (other than "no such registered model").
    """
    from mlflow.exceptions import MlflowException

    escaped = registered_model_name.replace("'", "\\'")
    try:
        versions = client.search_model_versions(f"name = '{escaped}' AND tags.`{IDEMPOTENCY_TAG}` = '{token}'")
    except MlflowException as exc:
        if (getattr(exc, "error_code", "") or "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min(versions, key=lambda v: int(v.version)) if versions else None


def search_logged_models(client: MlflowClient, experiment_id: str, filter_string: str) -> list[LoggedModel]:
    """Every logged model of ``experiment_id`` matching ``filter_string`` (all pages)."""
    models: list[LoggedModel] = []
    page_token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=filter_string, page_token=page_token
        )
        models.extend(page)
        page_token = page.token
        if not page_token:
            return models


def logged_models_for(client: MlflowClient, experiment_id: str, token: str) -> list[LoggedModel]:
    """The logged models tagged with idempotency ``token``, oldest first."""
    models = search_logged_models(client, experiment_id, f"tags.`{IDEMPOTENCY_TAG}` = '{token}'")
    return sorted(models, key=lambda model: (model.creation_timestamp, model.model_id))


def is_ready(model: LoggedModel) -> bool:
    """Whether a logged model finished uploading (MLflow marks it READY; PENDING while uploading, FAILED after)."""
    return str(model.status).upper().endswith("READY")


def is_pending(model: LoggedModel) -> bool:
    """Whether a logged model is still uploading, or was left so by a process that died while uploading it."""
    return str(model.status).upper().endswith("PENDING")


#: How long a racer that finished logging waits for an older model of the same key that is still uploading.
RACER_WAIT_S = 60.0


def reconcile_logged_models(
    client: MlflowClient,
    experiment_id: str,
    token: str,
    own_model_id: str,
    *,
    wait_s: float = RACER_WAIT_S,
    poll_s: float = 1.0,
) -> str:
    """After logging ``own_model_id`` (READY): return the oldest READY model for ``token``, deleting ours if it lost.

    A model created before ours but still uploading belongs to a racing try: if it were ignored, that racer would
    later find *its* model the oldest READY one and keep it too. So wait (at most ``wait_s``) until no older model
    is PENDING; one that stays PENDING longer is taken as abandoned (a killed try, deleted by the next retry).
    Call it only when no version is registered: then the version decides (:func:`reconcile_version`).
    """
    deadline = time.monotonic() + wait_s
    while True:
        models = logged_models_for(client, experiment_id, token)
        own_index = next((i for i, model in enumerate(models) if model.model_id == own_model_id), len(models))
        if not any(is_pending(model) for model in models[:own_index]) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    ready = [model for model in models if is_ready(model)]
    winner = ready[0].model_id if ready else own_model_id
    if winner != own_model_id:
        logger.warning("A racing try logged model %s for the same task first; deleting this try's model.", winner)
        delete_logged_model(client, own_model_id)
    return str(winner)


def delete_logged_model(client: MlflowClient, model_id: str) -> None:
    """Best-effort cleanup after a failure or a lost race: the original error matters more than a failed delete."""
    from mlflow.exceptions import MlflowException

    try:
        client.delete_logged_model(model_id)
        logger.info("Deleted logged model %s", model_id)
    except (MlflowException, OSError) as exc:
        logger.warning("Could not delete logged model %s: %s", model_id, getattr(exc, "message", None) or exc)


def _delete_version(client: MlflowClient, registered_model_name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_model_version(registered_model_name, version)
    except (MlflowException, OSError) as exc:
        logger.warning(
            "Could not delete version %s of %r: %s",
            version,
            registered_model_name,
            getattr(exc, "message", None) or exc,
        )
