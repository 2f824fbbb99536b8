"""The reproduction report (``deepprop reproduce``): every claim of the papers as one row, measured by the
library and judged against a stated tolerance.

* :mod:`~deepprop.report.registry` - claims as functions ``(ctx) -> Measurement`` registered with their id,
  source, statement, paper numbers, tolerances and per-tier sizes (claims_001*.py, claims_002.py, ...);
* :mod:`~deepprop.report.verdict` - the pure verdict of measured numbers against the tolerance;
* :mod:`~deepprop.report.runner` - runs claims, saves each as it finishes (resumable), writes claims.json;
* :mod:`~deepprop.report.html` - the self-contained index.html.
"""

from deepprop.report.registry import Claim, Measurement, all_claims, claim, select
from deepprop.report.runner import ReportResult, run_report
from deepprop.report.verdict import Tolerance, Verdict, verdict

__all__ = ["Claim", "Measurement", "ReportResult", "Tolerance", "Verdict", "all_claims", "claim", "run_report",
           "select", "verdict"]
