"""Comparing architectures: the same data, budget and seeds for each, one folder of results.

- :func:`compare` trains every entry once per seed (runs are ordinary run folders).
- :func:`load_results` / :func:`write_results` read them back and write the table
  (``comparison.json/.csv/.md``) and plots (``curves.png``, ``accuracy_vs_params.png``,
  ``accuracy_vs_time.png``).
"""

from cnnlab.compare.entries import Entry, parse_entries, parse_entry
from cnnlab.compare.results import ModelResult, SeedRun, load_results, table_rows, write_results
from cnnlab.compare.runner import CompareOutcome, compare, read_plan

__all__ = [
    "CompareOutcome",
    "Entry",
    "ModelResult",
    "SeedRun",
    "compare",
    "load_results",
    "parse_entries",
    "parse_entry",
    "read_plan",
    "table_rows",
    "write_results",
]
