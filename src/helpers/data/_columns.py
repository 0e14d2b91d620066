"""Columns of a raw table (private to :mod:`helpers.data`): mapping, required, layout.

Applies a user's ``mapping`` -- ``{contract column: your column}``, the direction of a dataset
descriptor's ``columns`` (flat or per table; a per-session measure's column name also renames its
wide columns such as ``calpas_s1``) -- checks that required columns are present (suggesting a close name and the
mapping that would fix it), recognises wide per-session columns (``alliance_s3``,
``alliance_3``, ``alliance3``) and decides between long and wide layout.
"""

from __future__ import annotations

import difflib
import re

from helpers.contract import PARTICIPANT_COLUMNS, SESSION_COLUMNS, DataValidationError
from helpers.data._readers import _duplicate_names, _Raw

#: Columns without which a table cannot be analysed at all.
REQUIRED_SESSION_COLUMNS = ["participant_id", "session", "alliance"]
#: ``pss_sr_pre`` is the covariate of every outcome model, so it is required.
REQUIRED_PARTICIPANT_COLUMNS = ["participant_id", "pss_sr_pre"]

#: Per-session measures that may come in wide layout (``alliance_s1`` ...).
WIDE_MEASURES = ("alliance", "pss_sr")

#: Wide column names: ``alliance_s3``, ``alliance_3`` and ``alliance3`` all mean session 3.
_WIDE_RE = re.compile(r"^(?P<measure>alliance|pss_sr)(?:_s|_|s)?(?P<session>\d+)$")


def _wide_columns(columns) -> dict:
    """``{column: (measure, session)}`` of every wide-layout column."""
    out = {}
    for c in columns:
        m = _WIDE_RE.match(str(c))
        if m:
            out[c] = (m["measure"], int(m["session"]))
    return out


def _split_mapping(mapping):
    """``(sessions, participants, nested)``, each ``{your column: contract column}`` (the way the
    loader renames) from the user's ``{contract column: your column}``."""
    if mapping is None:
        return None, None, False
    if not isinstance(mapping, dict):
        raise TypeError(f"mapping must be a dict, got {type(mapping).__name__}")
    if mapping and set(mapping) <= {"sessions", "participants"} and all(
        isinstance(v, dict) for v in mapping.values()
    ):
        parts = [dict(mapping.get("sessions", {})), dict(mapping.get("participants", {}))]
        nested = True
    else:
        parts, nested = [dict(mapping), dict(mapping)], False
    for part in parts:
        _check_contract_keys(part)
    return *({yours: contract for contract, yours in part.items()} for part in parts), nested


#: What a mapping's keys may be: the contract's columns (and its wide per-session names).
_CONTRACT = set(SESSION_COLUMNS) | set(PARTICIPANT_COLUMNS) | set(WIDE_MEASURES)


def _check_contract_keys(mapping: dict):
    """Every key a contract column (``{contract column: your column}``); a mapping written the other
    way round is named as reversed, with the fix."""
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"mapping must map column names to column names: {key!r}: {value!r}")
        if key in _CONTRACT or _WIDE_RE.match(key):
            continue
        if value in _CONTRACT or _WIDE_RE.match(value):
            raise DataValidationError(
                "mapping", key, f"the mapping looks reversed: {{{key!r}: {value!r}}} maps your column to the "
                f"contract's; write it contract column first, {{{value!r}: {key!r}}} (as a dataset.yaml's "
                "columns: do)")
        raise DataValidationError(
            "mapping", key, f"{key!r} is not a column of the data contract (sessions: {SESSION_COLUMNS}; "
            f"participants: {PARTICIPANT_COLUMNS}; wide: alliance_s<k>, pss_sr_s<k>): a mapping is "
            "{contract column: your column}")


def _mapping_renames(columns, mapping: dict, wide_stems: bool) -> tuple[dict, set]:
    """Renames for ``columns``; a key also renames wide columns ``<key>_s<k>`` (sessions)."""
    renames, found = {}, set()
    for key, target in mapping.items():
        if key in columns:
            renames[key] = target
            found.add(key)
        elif wide_stems and target in WIDE_MEASURES:
            stem = re.compile(rf"^{re.escape(key)}(?P<sep>_s|_|s)?(?P<session>\d+)$")
            for c in columns:
                m = stem.match(str(c))
                if m:
                    renames[c] = f"{target}{m['sep'] or ''}{m['session']}"
                    found.add(key)
    return renames, found


def _rename(raw: _Raw, renames: dict) -> None:
    new = [renames.get(c, c) for c in raw.df.columns]
    dup = _duplicate_names(new)
    if dup:
        src = [c for c in raw.df.columns if renames.get(c, c) == dup[0]]
        raise DataValidationError(
            raw.file, dup[0],
            f"duplicate column name after applying the mapping: {src} all become {dup[0]!r}",
        )
    raw.df.columns = new


def _apply_mapping(s_raw: _Raw, p_raw: _Raw, mapping) -> dict:
    s_map, p_map, nested = _split_mapping(mapping)
    if s_map is None:
        return {}
    s_ren, s_found = _mapping_renames(list(s_raw.df.columns), s_map, True)
    p_ren, p_found = _mapping_renames(list(p_raw.df.columns), p_map, False)
    if nested:
        for keys, found, raw in ((s_map, s_found, s_raw), (p_map, p_found, p_raw)):
            missing = [k for k in keys if k not in found]
            if missing:
                raise DataValidationError(
                    raw.file, missing[0],
                    f"column named by the mapping not found in the file (columns: {list(raw.df.columns)})",
                )
    else:
        missing = [k for k in s_map if k not in s_found | p_found]
        if missing:
            raise DataValidationError(
                f"{s_raw.file} and {p_raw.file}" if s_raw.file != p_raw.file else s_raw.file,
                missing[0],
                "column named by the mapping not found in the file (sessions columns: "
                f"{list(s_raw.df.columns)}; participants columns: {list(p_raw.df.columns)})",
            )
    _rename(s_raw, s_ren)
    _rename(p_raw, p_ren)
    return {"sessions": s_ren, "participants": p_ren}


def _hint(name: str, columns) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1, cutoff=0.5)
    close = close or [c for c in columns if str(c).strip().lower() == name]
    if close:
        return f"; did you mean {close[0]!r}? pass mapping={{{name!r}: {close[0]!r}}}"
    return f"; columns found: {list(columns)}"


def _require(raw: _Raw, columns, what="") -> None:
    for col in columns:
        if col not in raw.df.columns:
            raise DataValidationError(
                raw.file, col, f"missing required column{what}" + _hint(col, raw.df.columns)
            )


def _detect_layout(raw: _Raw, layout: str) -> str:
    if layout not in ("auto", "long", "wide"):
        raise ValueError(f"layout must be 'auto', 'long' or 'wide', got {layout!r}")
    wide = _wide_columns(raw.df.columns)
    if layout != "auto":
        return layout
    if "session" in raw.df.columns and wide:
        raise DataValidationError(
            raw.file, "session",
            "ambiguous layout: a 'session' column (long) and wide columns "
            f"{sorted(wide)[:3]} both exist; pass layout='long' or layout='wide'",
        )
    if "session" in raw.df.columns:
        return "long"
    if wide:
        return "wide"
    raise DataValidationError(
        raw.file, "session",
        "missing required column: neither a 'session' column (long layout) nor wide columns "
        "such as 'alliance_s1' were found" + _hint("session", raw.df.columns),
    )

