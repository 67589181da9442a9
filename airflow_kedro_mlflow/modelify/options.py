"""``log_model_kwargs`` as kedro-mlflow projects write them, checked and mapped onto MLflow 3's ``log_model``.

Everything here runs before any side effect, so a wrong option never leaves a run or a half-logged model behind.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_kedro_mlflow.exceptions import KedroPipelineModelError, ModelRegistrationError
from airflow_kedro_mlflow.tracking.registry import validate_registered_model_name

DEFAULT_MODEL_NAME = "model"
"""Name of the logged model inside its run (MLflow 3's ``name``, kedro-mlflow's ``artifact_path``)."""

#: ``mlflow.pyfunc.log_model`` arguments that modelify sets itself: a user value would silently break the model.
RESERVED_LOG_MODEL_KWARGS = frozenset({"python_model", "artifacts", "loader_module", "data_path", "model_id"})


@dataclass(frozen=True)
class LogOptions:
    """``log_model_kwargs`` checked and split into what modelify handles and what goes to ``log_model``."""

    name: str
    signature: Any
    registered_model_name: str | None
    passthrough: dict[str, Any]


def _log_model_parameters() -> set[str]:
    """Parameters ``mlflow.pyfunc.log_model`` accepts in the installed MLflow (the source of truth)."""
    import mlflow.pyfunc

    return set(inspect.signature(mlflow.pyfunc.log_model).parameters)


def normalize_log_model_kwargs(
    log_model_kwargs: Mapping[str, Any] | None, registered_model_name: str | None = None
) -> LogOptions:
    """Check ``log_model_kwargs`` as kedro-mlflow projects write them and map them onto MLflow 3.

    ``artifact_path`` (MLflow 2's and kedro-mlflow's word) is MLflow 3's ``name``; ``signature="auto"`` (the default)
    infers the signature from the training input data and the inference pipeline's ``params:`` inputs;
    ``registered_model_name`` here is used when the caller did not pass one. Unknown keys fail with close matches
    instead of reaching ``log_model`` as a ``TypeError``.
    """
    kwargs = dict(log_model_kwargs or {})
    accepted = _log_model_parameters()
    reserved = sorted(set(kwargs) & RESERVED_LOG_MODEL_KWARGS)
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
            f"{hint_text + '. ' if hint_text else ''}Accepted: {sorted(accepted - RESERVED_LOG_MODEL_KWARGS)}."
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
        from mlflow.models import ModelSignature

        signature = ModelSignature.from_dict(dict(signature))
    environment = sorted(k for k in ("conda_env", "pip_requirements", "extra_pip_requirements") if kwargs.get(k))
    if len(environment) > 1:
        raise KedroPipelineModelError(
            f"log_model_kwargs set {' and '.join(environment)}; MLflow accepts only one of them. Use "
            "extra_pip_requirements alone to add to the pinned defaults, pip_requirements or conda_env to replace them."
        )
    return LogOptions(name=model_name, signature=signature, registered_model_name=final_registered, passthrough=kwargs)


def with_default_environment(passthrough: Mapping[str, Any], project_package: str | None) -> dict[str, Any]:
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
