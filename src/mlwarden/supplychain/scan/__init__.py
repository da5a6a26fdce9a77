"""Scan serialized model artifacts for code that would run when they are loaded.

Nothing scanned is ever unpickled, imported or executed: pickles are read opcode by opcode
(:mod:`~mlwarden.supplychain.scan.pickles`), each imported global is judged by an allow-list and
a deny-list (:mod:`~mlwarden.supplychain.scan.policy`), containers are walked member by member
(:mod:`~mlwarden.supplychain.scan.archives`) and data-only formats have their headers checked
(:mod:`~mlwarden.supplychain.scan.formats`).
"""

from mlwarden.supplychain.scan.pickles import PickleScan, scan_pickle_bytes, scan_pickle_stream
from mlwarden.supplychain.scan.policy import GlobalVerdict, classify_global
from mlwarden.supplychain.scan.results import FileScan, GlobalUse, ScanIssue, ScanReport
from mlwarden.supplychain.scan.scanner import SAFE_FORMATS, scan_file, scan_paths

__all__ = [
    "SAFE_FORMATS",
    "FileScan",
    "GlobalUse",
    "GlobalVerdict",
    "PickleScan",
    "ScanIssue",
    "ScanReport",
    "classify_global",
    "scan_file",
    "scan_paths",
    "scan_pickle_bytes",
    "scan_pickle_stream",
]
