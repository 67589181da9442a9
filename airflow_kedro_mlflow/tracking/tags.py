"""The MLflow tags this package writes, and the one way to build them.

Runs, logged models and model versions carry the same namespaced tags, so the MLflow UI and searches tie each of them
to the Airflow task try and the Kedro run that made it (``airflow.*``, ``kedro.*``, ``git.*``), and so retries find
what earlier tries left (:data:`RETRY_IDENTITY_TAGS`, :data:`IDEMPOTENCY_TAG`).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DAG_ID_TAG = "airflow.dag_id"
DAG_RUN_ID_TAG = "airflow.dag_run_id"
TASK_ID_TAG = "airflow.task_id"
MAP_INDEX_TAG = "airflow.map_index"
TRY_NUMBER_TAG = "airflow.try_number"
KEDRO_ENV_TAG = "kedro.env"
KEDRO_PIPELINE_TAG = "kedro.pipeline_name"
KEDRO_SESSION_TAG = "kedro.session_id"
GIT_SHA_TAG = "git.sha"
GIT_DIRTY_TAG = "git.dirty"

#: MLflow tags that identify one task of one orchestrated run across its tries: a run or model tagged with the same
#: values was made by an earlier try of that task (training closes the runs killed tries left open; modelify reuses
#: their model). Mapped tasks are distinct tasks, so the map index is part of the identity.
RETRY_IDENTITY_TAGS = (DAG_ID_TAG, DAG_RUN_ID_TAG, TASK_ID_TAG, MAP_INDEX_TAG)

IDEMPOTENCY_TAG = "airflow_kedro_mlflow.idempotency_key"
"""Tag on logged models and model versions: sha256 of the idempotency key, so a retry finds what it logged."""

TRAINING_RUN_TAG = "airflow_kedro_mlflow.training_run_id"
"""Tag on logged models and model versions: the MLflow run whose artifacts the model was built from."""

FAILED_REASON_TAG = "airflow_kedro_mlflow.failed_reason"
"""Tag on runs this package marked FAILED itself (e.g. left RUNNING by a killed try), saying why."""

#: MLflow's limit on a tag value (``mlflow.utils.validation``); longer values are cut, not refused.
MAX_TAG_VALUE_LENGTH = 8000


def clean_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags as MLflow stores them: string keys and values, None dropped, values cut to MLflow's length limit."""
    return {str(key): str(value)[:MAX_TAG_VALUE_LENGTH] for key, value in (tags or {}).items() if value is not None}


def lineage_tags(
    tags: Mapping[str, Any] | None,
    *,
    env: str | None,
    pipeline_name: str,
    project_path: str | Path | None = None,
    session_id: str | None = None,
) -> dict[str, str]:
    """The caller's tags plus the Kedro lineage (env, pipeline, session, git commit), the caller's winning.

    :param project_path: where to read the git commit (``git rev-parse``); none is recorded outside a work tree.
    """
    lineage: dict[str, Any] = {KEDRO_PIPELINE_TAG: pipeline_name, KEDRO_ENV_TAG: env, KEDRO_SESSION_TAG: session_id}
    if project_path is not None:
        lineage.update(git_tags(project_path))
    return clean_tags({**lineage, **dict(tags or {})})


def idempotency_token(idempotency_key: Mapping[str, Any]) -> str:
    """Return the sha256 of the key's canonical JSON: one tag value to search for, whatever the key holds."""
    if not idempotency_key:
        raise ValueError("idempotency_key is empty: pass e.g. {'airflow.dag_id': ..., 'airflow.dag_run_id': ...}.")
    canonical = json.dumps({str(k): str(v) for k, v in idempotency_key.items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def identity_token_tags(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The :data:`RETRY_IDENTITY_TAGS` among ``tags``, or None unless all are there (a run outside Airflow)."""
    identity = {key: str(tags[key]) for key in RETRY_IDENTITY_TAGS if tags.get(key) not in (None, "")}
    return identity if len(identity) == len(RETRY_IDENTITY_TAGS) else None


def try_number(tags: Mapping[str, Any] | None) -> int | None:
    """The Airflow try number recorded in ``tags`` (:data:`TRY_NUMBER_TAG`), or None outside Airflow."""
    try:
        return int(str((tags or {})[TRY_NUMBER_TAG]))
    except (KeyError, TypeError, ValueError):
        return None


def git_tags(path: str | Path) -> dict[str, str]:
    """``git.sha`` and ``git.dirty`` of the work tree at ``path``; empty when it is none (or git is not installed).

    One reading for every entry point (Kedro's session store only knows it for a session, and only when Kedro's own
    git lookup ran), so a run and the model logged from it always agree.
    """
    sha = _git(path, "rev-parse", "--verify", "--quiet", "HEAD")
    if sha is None or not re.fullmatch(r"[0-9a-f]{40,64}", sha):
        return {}
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    tags = {GIT_SHA_TAG: sha}
    if status is not None:
        tags[GIT_DIRTY_TAG] = str(bool(status)).lower()
    return tags


def _git(path: str | Path, *args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None
