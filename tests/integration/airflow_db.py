"""A migrated Airflow metadata DB and a DAGs folder for ``dag.test()``, set up alike by every module using one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def migrated_airflow(dags_folder: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Migrate the session's Airflow DB with ``env`` and keep ``env`` and ``dags_folder`` set in this process.

    ``env`` holds what the module's DAGs need (connection, project path, ...); the DB, the DAGs folder and no
    example DAGs are added here. Airflow reads its DAGs folder once at import, so the setting is patched too
    (``dag.test()`` syncs the DAG from it).
    """
    from airflow import settings

    full_env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.SQL_ALCHEMY_CONN,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **env,
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **full_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with pytest.MonkeyPatch.context() as patch:
        for name, value in full_env.items():
            patch.setenv(name, value)
        patch.setattr(settings, "DAGS_FOLDER", str(dags_folder))
        yield
