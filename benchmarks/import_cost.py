"""What a DAG file that uses the operators costs the DAG processor: import time of our operators vs ``airflow.sdk``.

Every sample is a fresh interpreter (nothing cached in ``sys.modules``), the variants interleaved so a load change on
the machine hits them alike. A child measures only its import statement, in wall time and in CPU time of its own
process (CPU time is what a busy machine disturbs least). The target compares against ``import airflow.sdk``; the
report also shows ``from airflow.sdk import BaseOperator, BaseHook, BaseOperatorLink``, the part of the SDK any
operator module loads, so the share that is ours stays visible. Writes ``docs/benchmarks/import_cost.md``.

    python benchmarks/import_cost.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = REPO_ROOT / "docs" / "benchmarks" / "import_cost.md"
TARGET_RATIO = 1.15

VARIANTS = {
    "airflow.sdk": "import airflow.sdk",
    "airflow.sdk bases": "from airflow.sdk import BaseOperator, BaseHook, BaseOperatorLink",
    "operators.kedro": "import airflow_kedro_mlflow.operators.kedro",
}
HEAVY = ("kedro", "mlflow")

CHILD = """
import json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
exec(sys.argv[1])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "heavy": sorted(set(json.loads(sys.argv[2])) & set(sys.modules))}))
"""


def sample(statement: str, env: dict[str, str]) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, statement, json.dumps(HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["heavy"]:
        raise SystemExit(f"{statement!r} imported {result['heavy']}: the import-cost contract is broken")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh interpreters per variant (default 15)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="akm-import-cost-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONDONTWRITEBYTECODE": "1",
            "KEDRO_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
        for statement in VARIANTS.values():  # warm the OS file cache once; not measured
            sample(statement, env)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeat):
            for name, statement in VARIANTS.items():
                samples[name].append(sample(statement, env))

    medians = {
        name: {kind: statistics.median(s[kind] for s in runs) for kind in ("wall", "cpu")}
        for name, runs in samples.items()
    }
    ratio_wall = medians["operators.kedro"]["wall"] / medians["airflow.sdk"]["wall"]
    ratio_cpu = medians["operators.kedro"]["cpu"] / medians["airflow.sdk"]["cpu"]
    ratio_bases = medians["operators.kedro"]["cpu"] / medians["airflow.sdk bases"]["cpu"]
    verdict = "meets" if ratio_cpu <= TARGET_RATIO else "misses"
    rows = "\n".join(
        f"| `{VARIANTS[name]}` | {m['wall'] * 1000:.0f} | {m['cpu'] * 1000:.0f} |" for name, m in medians.items()
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"""# Import cost of the operators

Median of {args.repeat} fresh interpreters per variant, interleaved; time of the import statement only.

| Import | wall (ms) | CPU (ms) |
|---|---:|---:|
{rows}

**Ratio `operators.kedro` / `airflow.sdk`: {ratio_cpu:.2f} in CPU time, {ratio_wall:.2f} in wall time** (target
≤ {TARGET_RATIO}, judged on CPU time: {verdict} it). Against the SDK base classes any operator module needs:
{ratio_bases:.2f} (CPU). Neither kedro nor mlflow was imported by any sample.

Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average during the
run {load}. apache-airflow {version("apache-airflow")}, kedro {version("kedro")}, mlflow {version("mlflow")}.
Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python benchmarks/import_cost.py --repeat {args.repeat}`.
"""
    )
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
