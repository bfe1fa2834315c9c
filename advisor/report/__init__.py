"""The recommendation report (docs/report.md, docs/report-brief.md).

`sections` holds the building blocks, `plan_table` the training plan with its arithmetic, `full` the
whole report in reading order, `brief` the one-screen view, and `markup` turns sections into markdown
or rich renderables. Only a rich Console writes.
"""

from advisor.report.brief import BRIEF_PLAN_ROWS, brief_renderables, brief_rules, print_brief, render_brief
from advisor.report.full import (
    APPROACH_WORDS,
    FORMATS,
    METHOD_WORDS,
    STAGE_WORDS,
    build_sections,
    print_report,
    render,
    report_json,
)
from advisor.report.plan_table import NO_REASON, plan_rows
from advisor.report.sections import Section, Table, gib, show_path

__all__ = [
    "APPROACH_WORDS",
    "BRIEF_PLAN_ROWS",
    "FORMATS",
    "METHOD_WORDS",
    "NO_REASON",
    "STAGE_WORDS",
    "Section",
    "Table",
    "brief_renderables",
    "brief_rules",
    "build_sections",
    "gib",
    "plan_rows",
    "print_brief",
    "print_report",
    "render",
    "render_brief",
    "report_json",
    "show_path",
]
