"""Resolve a model URI once to the concrete model a batch is scored with, and pin an alias to an asset event's version.

``models:/name@champion`` names whatever version holds the alias *now*; scoring a batch with it and recording only the
alias would leave no trace of which model produced the rows, and an alias moved halfway through a retry would mix two
models in one output. So the URI is resolved once, before anything is read, to ``models:/name/<version>`` and the
version's source run; that concrete URI is what is loaded, recorded in the output's metadata and returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import ModelUriError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

#: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``models:/<name>/latest`` (registered models).
_REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?")
#: ``models:/<model_id>``: a logged model (MLflow 3), not necessarily registered.
_LOGGED = re.compile(r"models:/(?P<model_id>m-[0-9a-f]+)/?")
#: ``runs:/<run_id>/<artifact path>``.
_RUN = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>.+)")

_EXAMPLES = "models:/<name>@<alias>, models:/<name>/<version>, models:/<model_id> or runs:/<run_id>/<path>"


@dataclass(frozen=True)
class ResolvedModel:
    """The one model a batch is scored with.

    :param requested_uri: the URI as the caller gave it (an alias, ``latest``...).
    :param model_uri: the concrete URI loaded: ``models:/<name>/<version>`` for a registered model, else the logged
        model or run URI as given.
    :param run_id: the MLflow run the model was logged from (its source run), when known.
    :param registered_model_name: registered model, None for a model that is only logged.
    :param version: registered version, None for a model that is only logged.
    """

    requested_uri: str
    model_uri: str
    run_id: str | None
    registered_model_name: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolution as plain JSON types (XCom, output metadata)."""
        return {
            "requested_model_uri": self.requested_uri,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "registered_model_name": self.registered_model_name,
            "version": self.version,
        }


def resolve_model_uri(model_uri: str, client: MlflowClient) -> ResolvedModel:
    """Resolve ``model_uri`` to one concrete model on ``client``'s server (call it inside ``TrackingConfig.activate``).

    :raises ModelUriError: a URI of another shape, or one naming a model, version, alias, logged model or run that
        does not exist; the message names the URI.
    """
    from mlflow.exceptions import MlflowException

    uri = model_uri.strip() if isinstance(model_uri, str) else ""
    if not uri:
        raise ModelUriError(f"model_uri is empty ({model_uri!r}); pass one of {_EXAMPLES}.")
    try:
        if match := _LOGGED.fullmatch(uri):
            logged = client.get_logged_model(match["model_id"])
            return ResolvedModel(uri, f"models:/{logged.model_id}", logged.source_run_id)
        if match := _REGISTERED.fullmatch(uri):
            return _registered(uri, client, match["name"], match["alias"], match["version"])
        if match := _RUN.fullmatch(uri):
            run = client.get_run(match["run_id"])
            return ResolvedModel(uri, uri, run.info.run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        reason = str(exc.message).rstrip(".")
        raise ModelUriError(
            f"model_uri {uri!r} resolves to no model on the tracking server: {reason}. Check the name, version or "
            "alias in the MLflow UI (models:/<name>@<alias> needs the alias to be set on a version)."
        ) from exc
    raise ModelUriError(
        f"model_uri {uri!r} is not a model URI batch scoring can resolve to a concrete model; pass one of {_EXAMPLES}."
    )


def _registered(uri: str, client: MlflowClient, name: str, alias: str | None, version: str | None) -> ResolvedModel:
    if alias is not None:
        model_version = client.get_model_version_by_alias(name, alias)
    elif version == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ModelUriError(f"model_uri {uri!r} resolves to no model: registered model {name!r} has no versions.")
        model_version = max(versions, key=lambda candidate: int(candidate.version))
    elif version is not None and version.isdigit():
        model_version = client.get_model_version(name, version)
    else:
        raise ModelUriError(
            f"model_uri {uri!r} names version {version!r}; stages are deprecated in MLflow 3. Use an alias "
            f"(models:/{name}@champion), a version number (models:/{name}/3) or models:/{name}/latest."
        )
    return ResolvedModel(
        uri,
        f"models:/{model_version.name}/{model_version.version}",
        model_version.run_id or None,
        registered_model_name=str(model_version.name),
        version=str(model_version.version),
    )


def pin_to_event(model_uri: str, event_extras: Iterable[Mapping[str, Any]], tracking_uri: str | None = None) -> str:
    """Return ``models:/<name>/<version>`` of the last event about ``models:/<name>@<alias>``, else ``model_uri``.

    A scoring DAG scheduled on a model's champion asset must score with the version whose promotion triggered it,
    even if the alias has moved again since: this reads the version from the triggering event's ``extra`` (keys
    ``registered_model_name``, ``alias``, ``version``), taking the last matching event when several were consumed.

    :param event_extras: the ``extra`` of each triggering asset event, oldest first.
    :param tracking_uri: the server scoring reads from; an event about another server's model (its ``tracking_uri``
        differs) is not about this model and is skipped.
    """
    from airflow_kedro_mlflow.tracking import same_tracking_uri

    match = _REGISTERED.fullmatch(model_uri.strip()) if isinstance(model_uri, str) else None
    if match is None or match["alias"] is None:
        return model_uri
    pinned = model_uri
    for extra in event_extras:
        if (
            str(extra.get("registered_model_name")) == match["name"]
            and str(extra.get("alias")) == match["alias"]
            and str(extra.get("version", "")).isdigit()
            and (
                tracking_uri is None
                or not extra.get("tracking_uri")
                or same_tracking_uri(extra["tracking_uri"], tracking_uri)
            )
        ):
            pinned = f"models:/{match['name']}/{extra['version']}"
    return pinned
