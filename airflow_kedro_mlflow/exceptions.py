"""Every error the package raises, in one place.

Bad input subclasses ``ValueError`` too, so callers that already catch ``ValueError`` keep working. Messages name
the thing at fault (dataset, path, run, connection) and say how to fix it.
"""

from __future__ import annotations


class AirflowKedroMlflowError(Exception):
    """Base class of every error raised by ``airflow_kedro_mlflow``."""


class PipelineMLError(AirflowKedroMlflowError, ValueError):
    """A training/inference pair is inconsistent, or an operation would make it so."""


class KedroPipelineModelError(AirflowKedroMlflowError, ValueError):
    """A ``KedroPipelineModel`` cannot be built, loaded or run with what it was given."""


class ArtifactNotFoundError(KedroPipelineModelError):
    """An artifact the inference pipeline needs is not persisted, or its file does not exist yet."""


class ArtifactIntegrityError(AirflowKedroMlflowError):
    """An artifact's content differs from the sha256 recorded when it was produced."""


class KedroProjectError(AirflowKedroMlflowError, ValueError):
    """A path is not a Kedro project, or a pipeline/env it is asked for does not exist."""


class KedroRunError(AirflowKedroMlflowError):
    """A node of a Kedro pipeline failed; the message names the node, the cause is the original error."""


class MlflowRunNotFoundError(AirflowKedroMlflowError, ValueError):
    """A run id given by the user does not exist on the tracking server."""


class MlflowConnectionError(AirflowKedroMlflowError, ValueError):
    """No usable MLflow tracking server is configured, or it cannot be reached."""


class ModelRegistrationError(AirflowKedroMlflowError, ValueError):
    """A model cannot be registered (invalid name or alias, registry refused it)."""


class TrainingXComError(AirflowKedroMlflowError, ValueError):
    """The payload a training task published is missing or malformed."""


class PromotionError(AirflowKedroMlflowError, ValueError):
    """A model version cannot be compared with the champion (metric missing, version unknown)."""
