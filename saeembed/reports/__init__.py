"""HTML reports people look at: the diff report, feature pages, the preference report and the
probe report. Each is one self-contained page (inline CSS and script, data as escaped JSON;
`page`) built from the store (`concept_data`), with the shown documents' tokens shaded by the
concept's activation (`tokens`)."""

from saeembed.reports.diff_report import DiffReport, build_diff_report, build_themes_report
from saeembed.reports.feature_pages import write_feature_page, write_feature_pages
from saeembed.reports.prefs_report import write_prefs_report
from saeembed.reports.probe_report import write_probe_report

__all__ = [
    "DiffReport",
    "build_diff_report",
    "build_themes_report",
    "write_feature_page",
    "write_feature_pages",
    "write_prefs_report",
    "write_probe_report",
]
