"""Every error the package raises, in one place.

Bad input subclasses ``ValueError`` too, so callers that already catch ``ValueError`` keep working, and the CLI maps
it to exit code 2; everything else (a server that is down, a node that failed, a changed artifact) is a failure of
the work itself, exit code 1. Messages name the thing at fault (dataset, path, run, connection) and say how to fix it.
"""

from __future__ import annotations


class AirflowKedroMlflowError(Exception):
    """Base class of every error raised by ``airflow_kedro_mlflow``."""


class PipelineMLError(AirflowKedroMlflowError, ValueError):
    """A training/inference pair is inconsistent, or an operation would make it so."""


class KedroPipelineModelError(AirflowKedroMlflowError, ValueError):
    """A ``KedroPipelineModel`` cannot be built, logged, loaded or run with what it was given."""


class ArtifactNotFoundError(KedroPipelineModelError):
    """An artifact the inference pipeline needs is not persisted, or its file does not exist (yet, or any more)."""


class ArtifactIntegrityError(AirflowKedroMlflowError):
    """An artifact's content differs from the sha256 recorded when it was produced."""


class KedroProjectError(AirflowKedroMlflowError, ValueError):
    """A Kedro project cannot be used as asked: not a project, unknown pipeline/env/node/runner/parameter, or a
    catalog whose artifacts cannot be shipped (a ``MemoryDataset``, two names sharing one upload folder)."""


class KedroRunError(AirflowKedroMlflowError):
    """A node of a Kedro pipeline failed; the message names the node, the cause is the original error."""


class MlflowRunNotFoundError(AirflowKedroMlflowError, ValueError):
    """A run id given by the user does not exist on the tracking server."""


class MlflowRunConflictError(AirflowKedroMlflowError, ValueError):
    """Another MLflow run than the one asked for is already active in this process."""


class MlflowConnectionError(AirflowKedroMlflowError, ValueError):
    """No usable MLflow tracking server is configured, or the server refused this client's credentials."""


class MlflowServerUnavailableError(AirflowKedroMlflowError, ConnectionError):
    """The configured MLflow tracking server cannot be reached right now: not bad input, retry once it is back."""


class ProjectEnvironmentError(AirflowKedroMlflowError, ValueError):
    """The project's Python environment cannot run the training: interpreter missing or not executable, Kedro or
    MLflow missing or of an unsupported version, a requirements file that does not resolve, ``uv`` not found."""


class ProjectProcessError(AirflowKedroMlflowError):
    """The process running the CLI in the project's environment failed in a way the CLI could not report itself:
    killed by a signal, or ended without its result file."""


class ModelRegistrationError(AirflowKedroMlflowError, ValueError):
    """A model cannot be registered (invalid name or alias, registry refused it)."""


class XComPayloadError(AirflowKedroMlflowError, ValueError):
    """A payload an upstream task published through XCom is missing or malformed."""


class TrainingXComError(XComPayloadError):
    """The payload a training task published is missing or malformed."""


class PromotionError(AirflowKedroMlflowError, ValueError):
    """A model version cannot be compared with the champion (metric missing, version unknown)."""


class SweepError(AirflowKedroMlflowError):
    """No training of a sweep (a mapped training task) can be selected: every child failed, none logged the metric,
    or a candidate run is not one of the sweep's."""


class ModelUriError(AirflowKedroMlflowError, ValueError):
    """A model URI cannot be resolved to one model: malformed, or no such registered model, version, alias,
    logged model or run on the tracking server."""


class ScoringInputError(AirflowKedroMlflowError, ValueError):
    """A batch-scoring input cannot be scored as given: unknown format or dataset, or columns the model's signature
    requires are missing."""


class ScoringOutputError(AirflowKedroMlflowError, ValueError):
    """A batch-scoring output cannot be written as asked: unknown format or dataset type, or it already exists and was
    written by another task (another DAG run) and ``overwrite`` was not given."""
