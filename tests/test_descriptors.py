"""A corpus of broken descriptors and data folders, each refused before the first notebook.

Every case is a small edit of one of two sound datasets (a wide CSV declared like the worked
example, and a long CSV with session labels), generated here from its spec: the refusal must
name the file and the key or column, with the fix, in one line and without a traceback. The
fast test loads each case in-process; the slow one runs each through the command line (as a
user would) and checks that it ends within 10 s, exits non-zero, and writes nothing -- not
into the data folder, not into ``runs/``, not into the repository (``git status``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from helpers import descriptor, example, paths
from helpers.contract import DataValidationError

WIDE = """name: Corpus trial
description: the base of the broken-descriptor corpus
simulated: true
files:
  sessions: trial.csv
  participants: trial.csv
layout: wide
columns:
  participant_id: ID
  alliance: WAI_{session}
  pss_sr: PCL_{session}
  pss_sr_pre: PCL_pre
  pss_sr_post: PCL_post
  female: gender
  age: Age
codes:
  female: {1: false, 2: true}
instruments:
  alliance: {name: WAI-SR, range: [1, 5], score: mean item score, reliability: 0.90}
  symptoms: {name: PCL-5, range: [0, 80], score: total}
"""

LONG = """name: Corpus long trial
files: {sessions: sessions.csv, participants: participants.csv}
layout: long
columns: {participant_id: ID, session: visit, alliance: wai, pss_sr_pre: PCL_pre}
session_labels: 'S{session}'
instruments: {alliance: {name: WAI-SR, range: [1, 5], reliability: 0.9}, symptoms: {name: PCL-5, range: [0, 80]}}
"""

BOMB = "description:\n" + "".join(
    f"  l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8 if i else ["lol"] * 8) + "]\n" for i in range(9))


@dataclass
class Case:
    """One broken dataset: ``base`` ("wide", "long" or None for a folder without descriptor)
    edited by ``yaml`` (old -> new in the descriptor), ``raw`` (the descriptor's bytes),
    ``table`` (a function of the wide table) or ``files`` (name -> text or bytes; None
    removes). The refusal is ``error`` with ``key`` (descriptor) or ``column`` (data) and holds
    every one of ``words``."""

    name: str
    base: str | None = "wide"
    yaml: dict = field(default_factory=dict)
    raw: bytes | None = None
    table: object = None
    files: dict = field(default_factory=dict)
    error: type = descriptor.DescriptorError
    key: str | None = None
    column: str | None = None
    words: tuple = ()
    cli_only: bool = False  # refused by the run's checks, before the loader is reached


def _set(col, row, value):
    def edit(t):
        t = t.copy()
        t[col] = t[col].astype(object)
        t.loc[row, col] = value
        return t
    return edit


def _no_alliance(t):
    return t.assign(**{c: None for c in t.columns if c.startswith("WAI_")})


def _outside(folder):
    return folder.parent / "outside" / "trial.csv"


CASES = [
    # ---- the eleven cases of issue 19
    Case("not-utf8", raw=WIDE.replace("Corpus trial", "Corpus tri\xe9l").encode("latin-1"), key=None,
         words=("not UTF-8", "byte 0xe9", "line 1", "save the descriptor as UTF-8")),
    Case("reliability-high", yaml={"reliability: 0.90": "reliability: high"}, key="instruments.alliance.reliability",
         words=("expected a number", "'high'")),
    Case("instruments-a-list", yaml={"instruments:\n  alliance:": "instruments:\n  - alliance:",
                                     "  symptoms:": "  - symptoms:"}, key="instruments", words=("expected a mapping",)),
    Case("simulated-quoted-no", yaml={"simulated: true": 'simulated: "no"'}, key="simulated",
         words=("expected true or false", "'no'")),
    Case("alias-bomb-in-description", yaml={"description: the base of the broken-descriptor corpus\n": BOMB},
         words=("aliases", "expand to more than")),
    Case("n-sessions-1e9", yaml={"layout: wide": "layout: wide\nn_sessions: 1000000000"}, key="n_sessions",
         words=("1000000000 declared", "largest session", "is 12", "leave n_sessions out")),
    Case("same-key-twice-in-columns", yaml={"  age: Age": "  age: Age\n  age: PCL_pre"}, key="columns.age",
         words=("given twice", "lines")),
    Case("one-source-two-contract-columns", yaml={"  age: Age": "  age: PCL_pre"}, key="columns.age",
         words=("already the column of columns.pss_sr_pre",)),
    Case("session-labels-with-wide", yaml={"layout: wide": "layout: wide\nsession_labels: 'S{session}'"},
         key="session_labels", words=("long layout only",)),
    Case("files-outside-the-folder", yaml={"  sessions: trial.csv": "  sessions: ../outside/trial.csv"},
         key="files.sessions", words=("outside the descriptor's folder",)),
    Case("alliance-all-missing", table=_no_alliance, error=DataValidationError, column="alliance",
         words=("no client has an observed alliance rating", "WAI_{session}")),
    # ---- YAML and the top level
    Case("yaml-syntax", yaml={"  female: {1: false, 2: true}": "  female: {1: false, 2: true"},
         words=("not valid YAML", "line")),
    Case("top-level-a-list", raw=b"- name: x\n- files: y\n", words=("expected a mapping of keys",)),
    Case("empty-descriptor", raw=b"", key="name", words=("missing",)),
    Case("unknown-top-level-key", yaml={"layout: wide": "layout: wide\nsessons: 3"}, key="sessons",
         words=("unknown key",)),
    Case("name-missing", yaml={"name: Corpus trial\n": ""}, key="name", words=("missing", "give the dataset a name")),
    Case("name-a-number", yaml={"name: Corpus trial": "name: 2024"}, key="name", words=("expected text", "quote it")),
    Case("name-two-lines", yaml={"name: Corpus trial": 'name: "Corpus\\ntrial"'}, key="name", words=("one line",)),
    Case("description-a-mapping", yaml={"description: the base of the broken-descriptor corpus": "description: {a: 1}"},
         key="description", words=("expected text",)),
    Case("simulated-a-number", yaml={"simulated: true": "simulated: 1"}, key="simulated",
         words=("expected true or false",)),
    Case("name-twice", yaml={"simulated: true": "simulated: true\nname: Other"}, key="name", words=("given twice",)),
    Case("recursive-alias", yaml={"description: the base of the broken-descriptor corpus": "description: &d [*d]"},
         words=("aliases", "refer to themselves")),
    Case("descriptor-of-2-mb", yaml={"description: the base of the broken-descriptor corpus":
                                     "description: " + "x" * (2 << 20)}, words=("bytes", "a descriptor is a few lines")),
    # ---- layout and sessions
    Case("layout-unknown", yaml={"layout: wide": "layout: diagonal"}, key="layout", words=("not one of",)),
    Case("n-sessions-quoted", yaml={"layout: wide": "layout: wide\nn_sessions: '12'"}, key="n_sessions",
         words=("positive whole number",)),
    Case("n-sessions-zero", yaml={"layout: wide": "layout: wide\nn_sessions: 0"}, key="n_sessions",
         words=("positive whole number",)),
    Case("n-sessions-fraction", yaml={"layout: wide": "layout: wide\nn_sessions: 12.5"}, key="n_sessions",
         words=("positive whole number",)),
    Case("n-sessions-below-the-data", yaml={"layout: wide": "layout: wide\nn_sessions: 10"},
         error=DataValidationError, column="WAI_11", words=("beyond n_sessions=10",)),
    # ---- files
    Case("files-missing", yaml={"files:\n  sessions: trial.csv\n  participants: trial.csv\n": ""}, key="files",
         words=("expected sessions: FILE and participants: FILE",)),
    Case("file-not-found", yaml={"  sessions: trial.csv": "  sessions: trail.csv"}, key="files.sessions",
         words=("file not found",)),
    Case("file-absolute", yaml={"  participants: trial.csv": "  participants: /etc/hostname"},
         key="files.participants", words=("absolute path",)),
    Case("file-is-a-folder", yaml={"  sessions: trial.csv": "  sessions: sub"}, files={"sub/x.csv": "a\n1\n"},
         key="files.sessions", words=("not a regular file",)),
    Case("file-a-link-leading-outside", yaml={"  sessions: trial.csv": "  sessions: link.csv"}, files={"link.csv": _outside},
         key="files.sessions", words=("outside the descriptor's folder",)),
    Case("sheet-a-number", yaml={"  participants: trial.csv": "  participants: trial.csv\n  sheet: 2"},
         key="files.sheet", words=("sheet name", "quoted")),
    Case("files-unknown-key", yaml={"  participants: trial.csv": "  participants: trial.csv\n  sheets: data"},
         key="files.sheets", words=("unknown key",)),
    # ---- columns
    Case("columns-a-list", yaml={WIDE[WIDE.index("columns:"):WIDE.index("codes:")]: "columns: [ID, Age]\n"},
         key="columns", words=("expected a mapping",)),
    Case("column-not-in-contract", yaml={"  age: Age": "  years: Age"}, key="columns.years",
         words=("not a contract column",)),
    Case("column-a-number", yaml={"  age: Age": "  age: 5"}, key="columns.age", words=("expected text", "quote it")),
    Case("pattern-on-a-participant-column", yaml={"  age: Age": "  age: Age_{session}"}, key="columns.age",
         words=("per-session columns",)),
    Case("pattern-with-two-sessions", yaml={"  alliance: WAI_{session}": "  alliance: WAI_{session}_{session}"},
         key="columns.alliance", words=("once",)),
    Case("pattern-in-the-long-layout", base="long", yaml={"alliance: wai": "alliance: 'wai_{session}'"},
         key="columns.alliance", words=("needs layout: wide",)),
    Case("mapped-pattern-matches-nothing", yaml={"  alliance: WAI_{session}": "  alliance: WIA_{session}"},
         error=DataValidationError, column="WIA_{session}", words=("no column matches",)),
    Case("mapped-column-absent", yaml={"  pss_sr_pre: PCL_pre": "  pss_sr_pre: PCL_before"},
         error=DataValidationError, column="PCL_before", words=("not found", "PCL_pre")),
    Case("a-column-claimed-twice", yaml={"  age: Age": "  age: WAI_1"}, error=DataValidationError, column="WAI_1",
         words=("columns.alliance and columns.age",)),
    # ---- codes
    Case("codes-yes-unquoted", yaml={"female: {1: false, 2: true}": "female: {yes: true, no: false}"},
         key="codes.female", words=("quote your value",)),
    Case("codes-yes-no-to-words", yaml={"female: {1: false, 2: true}": "female: {1: m, 2: f}"},
         key="codes.female", words=("true, false or null",)),
    Case("codes-a-list", yaml={"codes:\n  female: {1: false, 2: true}": "codes: [1, 2]"}, key="codes",
         words=("expected a mapping",)),
    Case("codes-score-to-text", yaml={"female: {1: false, 2: true}": "female: {1: false, 2: true}\n  age: {99: missing}"},
         key="codes.age", words=("numbers or null",)),
    Case("value-without-code", table=_set("gender", 3, 3), error=DataValidationError, column="gender",
         words=("have no code",)),
    # ---- instruments
    Case("range-reversed", yaml={"range: [1, 5]": "range: [5, 1]"}, key="instruments.alliance", words=("low < high",)),
    Case("range-as-text", yaml={"range: [1, 5]": "range: 1-5"}, key="instruments.alliance.range",
         words=("two numbers",)),
    Case("instrument-name-a-number", yaml={"name: PCL-5": "name: 5"}, key="instruments.symptoms.name",
         words=("expected text",)),
    Case("higher-is-better-quoted", yaml={"reliability: 0.90}": "reliability: 0.90, higher_is_better: 'yes'}"},
         key="instruments.alliance.higher_is_better", words=("true or false",)),
    Case("instrument-role-unknown", yaml={"  symptoms: {": "  mood: {"}, key="instruments",
         words=("unknown role 'mood'",)),
    Case("instrument-key-misspelt", yaml={"reliability: 0.90": "reliabilty: 0.90"}, key="instruments.alliance",
         words=("unknown key",)),
    Case("score-beyond-the-instrument", table=_set("WAI_3", 0, 9), error=DataValidationError, column="WAI_3",
         words=("score out of range [1, 5]", "read as the contract's alliance_s3")),
    # ---- the long layout
    Case("session-labels-that-do-not-match", base="long", yaml={"'S{session}'": "'T{session}'"},
         error=DataValidationError, column="visit", words=("do not match",)),
    Case("session-labels-undeclared", base="long", yaml={"session_labels: 'S{session}'\n": ""},
         error=DataValidationError, column="visit", words=("declaring session_labels: 'S{session}'",)),
    Case("session-labels-auto-on-wide-data", yaml={"layout: wide": "layout: auto\nsession_labels: 'S{session}'"},
         key="session_labels", words=("long layout only", "no session column")),
    # ---- folders without a descriptor (the contract's own names)
    Case("folder-without-participants", base=None, files={"participants.csv": None}, error=DataValidationError,
         words=("exactly one participants",)),
    Case("workbook-named-csv", base=None, files={"sessions.csv": b"PK\x03\x04" + b"\x00" * 64},
         error=DataValidationError, words=("unparseable file", "zip archive")),
    Case("participants-empty", base=None, files={"participants.csv": b""}, error=DataValidationError,
         words=("empty file",)),
    Case("csv-not-utf8", base=None, files={"participants.csv": "participant_id,pss_sr_pre\nJos\xe9,20\n".encode("latin-1")},
         error=DataValidationError, words=("not valid UTF-8",)),
    Case("ids-differ-between-files", base=None, files={"participants.csv": "participant_id,pss_sr_pre\nX1,20\n"},
         error=DataValidationError, column="participant_id", words=("participant ids in",)),
    Case("contract-alliance-all-missing", base=None, files={"sessions.csv": lambda f: _contract_sessions(None)},
         error=DataValidationError, column="alliance", words=("no client",)),
    Case("data-source-absent", base=None, files={"sessions.csv": None, "participants.csv": None}, cli_only=True,
         error=FileNotFoundError, words=("does not exist",)),
]


def _contract_sessions(alliance):
    rows = ["participant_id,session,alliance"] + [f"P{i},{s},{'' if alliance is None else alliance}"
                                                   for i in range(1, 6) for s in (1, 2, 3)]
    return "\n".join(rows) + "\n"


def _write_wide(folder: Path, table: pd.DataFrame) -> None:
    folder.mkdir(parents=True)
    table.to_csv(folder / "trial.csv", index=False)


def _base_table() -> pd.DataFrame:
    return example.other_trial_table()


def build(case: Case, root: Path, table: pd.DataFrame) -> Path:
    """The case's folder under ``root`` (the data source of the run)."""
    folder = root / case.name / "data"
    if case.base == "wide":
        _write_wide(folder, case.table(table) if case.table else table)
        text = WIDE
    elif case.base == "long":
        folder.mkdir(parents=True)
        long = table.melt(id_vars=["ID"], value_vars=[f"WAI_{s}" for s in range(1, 13)], var_name="visit",
                          value_name="wai")
        long["visit"] = "S" + long["visit"].str.replace("WAI_", "")
        long.to_csv(folder / "sessions.csv", index=False)
        table[["ID", "PCL_pre"]].to_csv(folder / "participants.csv", index=False)
        text = LONG
    else:
        folder.mkdir(parents=True)
        (folder / "sessions.csv").write_text(_contract_sessions(5))
        (folder / "participants.csv").write_text("participant_id,pss_sr_pre\n" + "".join(
            f"P{i},20\n" for i in range(1, 6)))
        text = None
    if text is not None:
        for old, new in case.yaml.items():
            assert old in text, (case.name, old)
            text = text.replace(old, new)
        (folder / descriptor.DESCRIPTOR).write_bytes(case.raw if case.raw is not None else text.encode("utf-8"))
    (root / case.name / "outside").mkdir()
    (root / case.name / "outside" / "trial.csv").write_text("not yours\n")
    for name, content in case.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            target.unlink(missing_ok=True)
        elif callable(content):
            made = content(folder)
            if isinstance(made, Path):
                target.unlink(missing_ok=True)
                target.symlink_to(made)
            else:
                target.write_text(made)
        else:
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    if case.name == "data-source-absent":
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    table = _base_table()
    return {case.name: build(case, root, table) for case in CASES}


def test_the_corpus_is_large_and_holds_the_issues_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("base", ["wide", "long", None])
def test_the_two_sound_datasets_load(tmp_path, base):
    """The corpus edits sound datasets: each refusal is the edit's."""
    folder = build(Case(f"sound-{base}", base=base), tmp_path, _base_table())
    trial = descriptor.load(folder, warn=False)
    assert trial.participants["participant_id"].nunique() >= 5


def _check_error(case: Case, exc: BaseException, text: str) -> None:
    assert isinstance(exc, case.error), (case.name, type(exc), text)
    for word in case.words:
        assert word in text, (case.name, word, text)
    if isinstance(exc, descriptor.DescriptorError):
        assert exc.key == case.key, (case.name, exc.key)
        assert len(text.strip().splitlines()) == 1, text
    if isinstance(exc, DataValidationError) and case.column is not None:
        assert exc.column == case.column, (case.name, exc.column)


@pytest.mark.parametrize("case", [c for c in CASES if not c.cli_only], ids=lambda c: c.name)
def test_each_broken_dataset_is_refused_naming_the_key_or_column(corpus, case):
    with pytest.raises(Exception) as err:
        descriptor.load(corpus[case.name], warn=False)
    _check_error(case, err.value, str(err.value))
    folder = str(corpus[case.name])
    assert folder in str(err.value) or case.name == "data-source-absent", str(err.value)  # the file is named


def _git_status():
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=paths.ROOT,
                          capture_output=True, text=True, check=True).stdout


def _snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")} if folder.exists() else {}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_broken_dataset_is_refused_by_the_command_line(corpus, case, tmp_path):
    """As a user runs it, from another folder and with the default output root: refused in
    one message within 10 s, exit 1, no traceback, nothing written anywhere."""
    folder = corpus[case.name]
    runs = paths.ROOT / "runs"
    in_git = (paths.ROOT / ".git").exists()
    before = (_git_status() if in_git else None, _snapshot(folder.parent), sorted(runs.iterdir()) if runs.exists() else [])
    env = {k: v for k, v in os.environ.items() if k != "REPLICATION_OUTPUT_ROOT"}
    out = subprocess.run([sys.executable, "-m", "helpers.pipeline", "--set", f"data_source={folder}", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=10)
    err = out.stderr
    assert out.returncode == 1, (case.name, out.returncode, err)
    assert "Traceback" not in err and err.startswith("pipeline failed: "), err
    for word in case.words:
        assert word in err, (case.name, word, err)
    if case.error is descriptor.DescriptorError:
        assert len(err.strip().splitlines()) == 1 and str(folder / descriptor.DESCRIPTOR) in err, err
    after = (_git_status() if in_git else None, _snapshot(folder.parent), sorted(runs.iterdir()) if runs.exists() else [])
    assert after == before, case.name
    assert not list(tmp_path.iterdir())  # nothing in the folder it was run from
