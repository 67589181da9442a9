"""Kedro parameters as MLflow params: one shaping and one logging, for the training operator and the Kedro hook.

Two shapes (:class:`ParamsOptions`), chosen per project so the training operator and the Kedro hook log the same set:

- ``flatten`` (the default): every parameter of the run (what ``parameters.yml`` and runtime params resolve to),
  nested keys flattened with dots (``model.C``), including those only the catalog reads;
- ``kedro_mlflow``: kedro-mlflow's shape, so runs from before and after a move off kedro-mlflow line up in the MLflow
  UI: one param per ``params:`` input of the nodes that run, named without the prefix, a nested dict as ONE param
  (``xgb_hyperparameters`` = ``{'eta': 0.1, ...}``), and ``parameters`` when a node reads them all.

A value longer than MLflow takes (6000 characters) follows ``long_params_strategy``, kedro-mlflow's option of the same
name: ``fail`` (an error naming the param), ``tag`` (logged as a run tag instead) or ``truncate`` (cut, the default).

For ``kedro run`` users the options live in the project's ``conf/<env>/airflow_kedro_mlflow.yml`` (read by the Kedro
hook and by ``run_training`` alike)::

    params:
      shape: kedro_mlflow
      long_params_strategy: tag

An explicit argument (``run_training(params_options=...)``, ``PipelineMLHook(params_options=...)``) wins over it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_kedro_mlflow.exceptions import KedroProjectError

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_MAX_PARAM_KEY_LENGTH = 250  # MLflow's limits (mlflow.utils.validation)
_MAX_PARAM_VALUE_LENGTH = 6000
_MAX_TAG_VALUE_LENGTH = 8000
_MAX_PARAMS_PER_BATCH = 100
_PARAMS_PREFIX = "params:"
#: What MLflow refuses in a param name (kedro-mlflow's sanitize_param_name replaces it by "_" too).
_INVALID_NAME_CHARS = re.compile(r"[^/\w.\- :]")

SHAPES = ("flatten", "kedro_mlflow")
LONG_PARAMS_STRATEGIES = ("fail", "tag", "truncate")
CONF_KEY = "airflow_kedro_mlflow"
"""Kedro config key of the project's settings: ``conf/<env>/airflow_kedro_mlflow.yml``."""


@dataclass(frozen=True)
class ParamsOptions:
    """How Kedro params become MLflow params: ``shape`` (``flatten`` or ``kedro_mlflow``) and what to do with a value
    longer than MLflow takes (``long_params_strategy``: ``fail``, ``tag`` or ``truncate``)."""

    shape: str = "flatten"
    long_params_strategy: str = "truncate"

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("long_params_strategy", self.long_params_strategy, LONG_PARAMS_STRATEGIES),
        ):
            if value not in allowed:
                raise KedroProjectError(
                    f"params {field}={value!r} is not one of {', '.join(map(repr, allowed))} (set in "
                    f"conf/<env>/{CONF_KEY}.yml under 'params:', or the params_options argument)."
                )

    @classmethod
    def resolve(
        cls, given: ParamsOptions | Mapping[str, Any] | None, project: Mapping[str, Any] | None = None
    ) -> ParamsOptions:
        """The options in effect: ``given`` (an argument) key by key over ``project`` (the project's settings).

        :raises KedroProjectError: an unknown key or value, naming it and the accepted ones.
        """
        merged: dict[str, Any] = {}
        for source, where in ((project, f"conf/<env>/{CONF_KEY}.yml 'params'"), (given, "params_options")):
            if source is None:
                continue
            if isinstance(source, ParamsOptions):
                merged.update(shape=source.shape, long_params_strategy=source.long_params_strategy)
                continue
            if not isinstance(source, Mapping):
                raise KedroProjectError(f"{where} must be a mapping like {{'shape': 'kedro_mlflow'}}, got {source!r}.")
            unknown = sorted(set(source) - {"shape", "long_params_strategy"})
            if unknown:
                raise KedroProjectError(
                    f"{where} has unknown key(s) {unknown}: use 'shape' ({' or '.join(SHAPES)}) and "
                    f"'long_params_strategy' ({', '.join(LONG_PARAMS_STRATEGIES)})."
                )
            merged.update({key: value for key, value in source.items() if value is not None})
        return cls(**merged)


def project_params_options(config_loader: Any) -> dict[str, Any] | None:
    """The ``params`` section of the project's ``airflow_kedro_mlflow.yml`` (None without the file or section).

    The config key is registered on the loader first, as kedro-mlflow does for ``mlflow.yml``: Kedro's
    ``OmegaConfigLoader`` only knows the patterns it was given.
    """
    from kedro.config import MissingConfigException

    patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(patterns, dict) and CONF_KEY not in patterns:
        patterns[CONF_KEY] = [f"{CONF_KEY}*", f"{CONF_KEY}*/**", f"**/{CONF_KEY}*"]
    try:
        settings = config_loader[CONF_KEY]
    except (MissingConfigException, KeyError):
        return None
    section = (settings or {}).get("params")
    if section is not None and not isinstance(section, Mapping):
        raise KedroProjectError(f"'params' in conf/<env>/{CONF_KEY}.yml must be a mapping, got {section!r}.")
    return dict(section) if section is not None else None


def flatten_params(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested Kedro params into MLflow params (``model.C``), with values cut to MLflow's length limit.

    A name longer than MLflow allows is left out with a warning rather than failing the whole run.
    """
    flat: dict[str, str] = {}
    _flatten("", parameters, flat)
    return flat


def shape_params(
    parameters: Mapping[str, Any],
    options: ParamsOptions | None = None,
    inputs: Iterable[str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The MLflow params (and, with ``long_params_strategy="tag"``, tags) of ``parameters``; see the module docs.

    :param inputs: dataset names the run's nodes read (``pipeline.inputs()``), for the ``kedro_mlflow`` shape;
        None takes every top-level parameter as read.
    :raises KedroProjectError: with ``long_params_strategy="fail"``, naming the param that is too long.
    """
    options = options or ParamsOptions()
    if options.shape == "flatten":
        values: dict[str, Any] = {}
        _flatten_raw("", parameters, values)
    else:
        values = _kedro_mlflow_params(parameters, inputs)
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for raw_name, value in values.items():
        name = _INVALID_NAME_CHARS.sub("_", raw_name)
        if name != raw_name:
            logger.warning("Kedro param %r is logged as %r: MLflow refuses the other characters.", raw_name, name)
        if len(name) > _MAX_PARAM_KEY_LENGTH:
            logger.warning("Kedro param %s... has a name longer than MLflow allows; not logged.", name[:60])
            continue
        text = str(value)
        if len(text) <= _MAX_PARAM_VALUE_LENGTH:
            params[name] = text
        elif options.long_params_strategy == "fail":
            raise KedroProjectError(
                f"Kedro param {name!r} is {len(text)} characters long as text; MLflow takes at most "
                f"{_MAX_PARAM_VALUE_LENGTH}. Set params long_params_strategy to 'tag' (log it as a run tag) or "
                f"'truncate' (conf/<env>/{CONF_KEY}.yml, or the params_options argument), or shorten the param."
            )
        elif options.long_params_strategy == "tag":
            logger.warning("Kedro param %r (%d characters) is logged as a run tag.", name, len(text))
            tags[name] = text[:_MAX_TAG_VALUE_LENGTH]
        else:
            logger.warning("Kedro param %r (%d characters) is cut to MLflow's %d.", name, len(text),
                           _MAX_PARAM_VALUE_LENGTH)  # fmt: skip
            params[name] = (
                text[: _MAX_PARAM_VALUE_LENGTH - 3] + "..."
                if options.shape == "flatten"
                else text[:_MAX_PARAM_VALUE_LENGTH]  # kedro-mlflow's cut, so values line up
            )
    return params, tags


def log_params(
    client: MlflowClient,
    run_id: str,
    parameters: Mapping[str, Any],
    *,
    options: ParamsOptions | None = None,
    inputs: Iterable[str] | None = None,
) -> None:
    """Log Kedro params in the shape of ``options`` (see :func:`shape_params`), in batches of 100.

    A resumed run may already hold some: MLflow refuses to change a param, so those with another value are kept as
    they are, with a warning.
    """
    from mlflow.entities import Param, RunTag

    params, tags = shape_params(parameters, options, inputs)
    existing = client.get_run(run_id).data.params
    changed = sorted(key for key, value in params.items() if key in existing and existing[key] != value)
    if changed:
        logger.warning(
            "MLflow run %s already has params %s with other values; keeping the logged ones.", run_id, changed
        )
    todo = [Param(key, value) for key, value in sorted(params.items()) if key not in existing]
    for start in range(0, len(todo), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=todo[start : start + _MAX_PARAMS_PER_BATCH])
    if tags:
        client.log_batch(run_id, tags=[RunTag(key, value) for key, value in sorted(tags.items())])


def _kedro_mlflow_params(parameters: Mapping[str, Any], inputs: Iterable[str] | None) -> dict[str, Any]:
    """kedro-mlflow's params: each ``params:x.y`` the nodes read as ``x.y`` (its value as is), and ``parameters``."""
    if inputs is None:
        return dict(parameters)
    values: dict[str, Any] = {}
    for name in sorted(inputs):
        if name == "parameters":
            values[name] = dict(parameters)
        elif name.startswith(_PARAMS_PREFIX):
            found, value = _lookup(parameters, name.removeprefix(_PARAMS_PREFIX))
            if found:
                values[name.removeprefix(_PARAMS_PREFIX)] = value
    return values


def _lookup(parameters: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``params:a.b`` as Kedro resolves it: the key ``a.b`` itself, else ``b`` inside ``a``."""
    if dotted in parameters:
        return True, parameters[dotted]
    value: Any = parameters
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _flatten_raw(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten_raw(f"{prefix}.{key}" if prefix else str(key), item, into)
        return
    if prefix:
        into[prefix] = value


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    raw: dict[str, Any] = {}
    _flatten_raw(prefix, value, raw)
    for name, item in raw.items():
        if len(name) > _MAX_PARAM_KEY_LENGTH:
            logger.warning("Kedro param %s... has a name longer than MLflow allows; not logged.", name[:60])
            continue
        text = str(item)
        into[name] = text[: _MAX_PARAM_VALUE_LENGTH - 3] + "..." if len(text) > _MAX_PARAM_VALUE_LENGTH else text
