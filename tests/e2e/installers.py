"""Install what the browser, Spark and production-topology scenarios need from Debian's packages, when missing.

CI runs on a fresh Debian machine as root, so the test setup itself installs Debian's ``chromium`` (driven by the
pip-pinned Playwright through ``executable_path``; ``playwright install`` would download a browser build, which this
project never does), a Java runtime for pyspark, and PostgreSQL and Redis for the Celery + PostgreSQL topology.
Elsewhere, without root, the error says what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
#: Where Debian's ``postgresql`` package puts the server binaries (``initdb``, ``pg_ctl``, ``postgres``), per version.
POSTGRESQL_LIB = Path("/usr/lib/postgresql")

#: Chromium flags measured to work headless in containers (NOTES-real-services.md §4): no sandbox (root, no user
#: namespaces), no GPU, and nothing that phones home.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class MissingSystemPackageError(RuntimeError):
    """A Debian package the scenario needs is missing and cannot be installed here (message says how to)."""


def _apt_install(package: str, why: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise MissingSystemPackageError(
            f"{why} Install it with `sudo apt-get update && sudo apt-get install -y --no-install-recommends "
            f"{package}`, or deselect these tests (-m 'not browser and not spark', -k 'not production_topology')."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", package],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise MissingSystemPackageError(
                f"`{' '.join(command)}` failed with exit code {done.returncode}:\n{done.stderr[-3000:]}"
            )


def ensure_chromium() -> Path:
    """Return Debian's chromium, installing the ``chromium`` package first when it is missing."""
    if not CHROMIUM.exists():
        _apt_install("chromium", f"The browser tests drive Debian's chromium at {CHROMIUM}, which is missing.")
    return CHROMIUM


def ensure_java() -> str:
    """Return the ``java`` executable pyspark will use, installing ``openjdk-17-jre-headless`` when missing."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    if shutil.which("java") is None:
        _apt_install("openjdk-17-jre-headless", "pyspark needs a Java runtime and `java` is not on PATH.")
    java = shutil.which("java")
    if java is None:
        raise MissingSystemPackageError("openjdk-17-jre-headless installed, yet `java` is still not on PATH.")
    return java


def ensure_postgresql() -> Path:
    """Return the ``bin`` directory of the newest installed PostgreSQL, installing ``postgresql`` when none is.

    The server refuses to run as root, so it is started as the ``postgres`` system user the package creates.
    """

    def newest() -> Path | None:
        found = [path for path in POSTGRESQL_LIB.glob("*/bin") if (path / "pg_ctl").exists()]
        return max(found, key=lambda path: float(path.parent.name), default=None)

    bin_dir = newest()
    if bin_dir is None:
        _apt_install(
            "postgresql", f"The production-topology test runs a PostgreSQL server; none under {POSTGRESQL_LIB}."
        )
        bin_dir = newest()
    if bin_dir is None:
        raise MissingSystemPackageError(f"postgresql installed, yet no {POSTGRESQL_LIB}/<version>/bin/pg_ctl exists.")
    return bin_dir


def ensure_redis() -> str:
    """Return ``redis-server``, installing Debian's ``redis-server`` package when it is missing.

    The package starts no server here (no init system in a container): the test runs one on 127.0.0.1 itself.
    """
    if shutil.which("redis-server") is None:
        _apt_install("redis-server", "The production-topology test uses Redis as the Celery broker; it is missing.")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise MissingSystemPackageError("redis-server installed, yet `redis-server` is still not on PATH.")
    return redis_server
