"""Sphinx configuration of the airflow-kedro-mlflow docs (MyST Markdown, furo theme, built with ``-W``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

if TYPE_CHECKING:
    from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the package, which imports Airflow; Kedro and MLflow are imported by the core modules. Keep the
# build off the network, and let Airflow write its default config under the build directory, not in ~/airflow.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AIRFLOW_HOME", str(DOCS / "_build" / "airflow_home"))

from airflow_kedro_mlflow import __version__  # noqa: E402  (after sys.path is set)

project = "airflow-kedro-mlflow"
author = "airflow-kedro-mlflow contributors"
copyright = "2026, airflow-kedro-mlflow contributors"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
# docs/benchmarks/*.md are written by the benchmark scripts and included by benchmarks.md, not pages of their own.
exclude_patterns = ["_build", "benchmarks/*.md", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# Included benchmark reports start at their own heading level.
suppress_warnings = ["myst.header"]

nitpicky = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Methods a class only overrides (PipelineML's filters) would otherwise show Kedro's docstrings, which are not reST.
autodoc_inherit_docstrings = False
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"airflow-kedro-mlflow {release}"
html_static_path = ["_static"]


class BenchmarkResults(Directive):
    """Include every report the benchmark scripts wrote to ``docs/benchmarks/*.md``, in name order.

    The scripts in ``benchmarks/`` own those files (tables, the machine and versions, and a PNG next to them); this
    page only includes them, so re-running a benchmark updates the docs with no edit here.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        reports = sorted((DOCS / "benchmarks").glob("*.md"))
        env = self.state.document.settings.env
        if not reports:
            paragraph = nodes.paragraph(
                text="This checkout holds no benchmark reports yet: run the scripts listed above to write them."
            )
            return [paragraph]
        lines: list[str] = []
        for report in reports:
            env.note_dependency(str(report))
            lines += [f"```{{include}} benchmarks/{report.name}", ":relative-images:", ":heading-offset: 1", "```", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="benchmarks.md"), self.content_offset, container)
        return container.children


class CliHelp(Directive):
    """Show the ``--help`` text of an ``airflow-kedro-mlflow`` command, read from the parser the CLI itself uses.

    The reference can then never disagree with the installed CLI: a flag added to ``cli.build_parser`` appears here
    at the next build. The argument is the sub-command (``modelify``), or nothing for the top-level help.
    """

    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from airflow_kedro_mlflow.cli import build_parser

        parser = build_parser()
        if self.arguments:
            # argparse has no public accessor for a sub-command's parser; its ``_actions`` list is where they live.
            (subparsers,) = (action for action in parser._actions if action.choices and action.dest == "command")
            parser = subparsers.choices[self.arguments[0]]
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "80"  # argparse wraps at the terminal width: make the page independent of it
        try:
            text = parser.format_help()
        finally:
            if previous is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class OptionalFigure(Directive):
    """A figure shown only when its image exists: screenshots written by a test run (``E2E_SCREENSHOT_DIR``).

    The end-to-end browser test saves the Airflow trigger form it filled; a checkout where it has not run yet builds
    the same page without the picture instead of failing the ``-W`` build on a missing file.
    """

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        uri = self.arguments[0]
        if not (DOCS / uri).is_file():
            return []
        figure = nodes.figure()
        figure += nodes.image(uri=uri, alt=" ".join(self.content) or uri)
        if self.content:
            figure += nodes.caption(text=" ".join(self.content))
        return [figure]


def _always_reread(app: Sphinx, env: object, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Re-read the pages whose content comes from outside ``docs/`` sources: new reports, the installed CLI."""
    return ["benchmarks", "cli", "operators"]


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the ``benchmark-results``, ``cli-help`` and ``optional-figure`` directives."""
    app.add_directive("benchmark-results", BenchmarkResults)
    app.add_directive("cli-help", CliHelp)
    app.add_directive("optional-figure", OptionalFigure)
    app.connect("env-get-outdated", _always_reread)
    return {"parallel_read_safe": True}
