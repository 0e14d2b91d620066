"""Root pytest configuration, shared by the unit tests and the notebook tests (nbval).

Tests never write into the published outputs: every output of a test session (including the
notebooks that nbval re-executes) goes to a temporary output root, unless the caller has set
``REPLICATION_OUTPUT_ROOT`` already. It is set here, before any kernel starts, because kernels
inherit the environment of the pytest process, and removed when the session ends.
"""

import os
import shutil
import tempfile

_OWN_OUTPUT_ROOT = None
if not os.environ.get("REPLICATION_OUTPUT_ROOT"):
    _OWN_OUTPUT_ROOT = tempfile.mkdtemp(prefix="replication-test-outputs-")
    os.environ["REPLICATION_OUTPUT_ROOT"] = _OWN_OUTPUT_ROOT
# debugpy's frozen-modules warning at every kernel start is noise, not a result.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_OUTPUT_ROOT:
        shutil.rmtree(_OWN_OUTPUT_ROOT, ignore_errors=True)
