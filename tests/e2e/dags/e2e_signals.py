"""File signals between the e2e tests and the test DAG's tasks (they share this machine's disk, not memory).

No kedro, no mlflow: the test DAG file imports this module and the DAG processor parses it every few seconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Environment variable holding the signal directory; set for every Airflow process by the e2e fixture.
SIGNAL_DIR_ENV = "E2E_SIGNAL_DIR"


def signal_file(dag_run_id: str, suffix: str, signal_dir: str | Path | None = None) -> Path:
    """``<signal dir>/<dag_run_id made filename-safe>.<suffix>``."""
    root = Path(signal_dir if signal_dir is not None else os.environ[SIGNAL_DIR_ENV])
    return root / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', dag_run_id)}.{suffix}"
