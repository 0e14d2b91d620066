"""Notebook conventions: warnings as sentences."""

import subprocess
import sys


def test_warnings_are_shown_every_time_as_sentences_without_file_paths():
    code = ("import warnings; from helpers import notebook; notebook.setup()\n"
            "for _ in range(2): warnings.warn('5 rows dropped', UserWarning)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err == "Warning: 5 rows dropped\nWarning: 5 rows dropped\n"
