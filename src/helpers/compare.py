"""Compare generated files by what they show, with numbers at a stated tolerance.

Two machines with different BLAS kernels agree on every model estimate to about 1e-11
relative, not to the last bit. Whatever those bits reach (a table's last digit on a rounding
edge, an SVG coordinate, a PNG pixel) must not count as a different result. So every
generated file has a *kind* (:func:`kind_of`):

* ``exact`` -- processed data, result tables, figure data tables: written at a fixed precision
  and expected byte-identical; when the bytes differ, their numbers are compared at the
  tolerance below, so a value on a rounding edge that flips is reported, not failed.
* ``rendered`` -- executed notebooks, the HTML report, the README fragment: compared as text
  (embedded images left out, notebook metadata ignored) with numbers at the tolerance; figures
  (PNG, SVG) are compared through the data table written beside each (``NAME.data.csv``, see
  :func:`helpers.figures.figure_data`).

Two printed numbers are equal within tolerance when they differ by at most
``RTOL`` x the larger magnitude plus ``ATOL``, or -- for numbers printed with a decimal point
or an exponent -- by at most one unit in their last printed digit: two values 1e-12 apart can
round to neighbouring printed values. Integers (counts, N) must be equal. The text between the
numbers must be identical.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

#: Relative tolerance of a number (the BLAS noise seen between machines is ~1e-11).
RTOL = 1e-6
#: Absolute floor: numbers that should be zero come out as differences of O(10) quantities,
#: so their noise is ~1e-11 (seen: -1.6e-15 on one machine, 3.2e-12 with perturbed BLAS).
ATOL = 1e-9
#: A difference of one unit in the last printed digit is a rounding edge only where that unit is
#: at most this fraction of the number.
UNIT_RTOL = 1e-4

# A number not glued to a word (so `03_growth`, `x2` and `#D55E00` stay text).
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d+|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w|\.\d)")
_EMBEDDED_IMAGE = re.compile(r"data:image/[a-z+.-]+;base64,[A-Za-z0-9+/=\s]+")

IDENTICAL = "identical"
WITHIN = "equal within tolerance"
DIFFERENT = "different"

#: Where the data table of a figure file lives (the comparison of PNG/SVG files uses it).
FIGURE_SUFFIXES = (".png", ".svg")
FIGURE_DATA_SUFFIX = ".data.csv"


@dataclass
class Comparison:
    """Outcome of comparing one file: ``status`` is :data:`IDENTICAL`, :data:`WITHIN` or
    :data:`DIFFERENT`; ``detail`` says where (largest difference, or first difference)."""

    status: str
    detail: str = ""
    largest: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != DIFFERENT

    def __str__(self) -> str:
        return self.status + (f" ({self.detail})" if self.detail else "")


def kind_of(rel_path: str) -> str:
    """``"exact"`` or ``"rendered"`` for a generated file's path relative to the output root."""
    path = PurePosixPath(rel_path)
    if path.suffix in FIGURE_SUFFIXES or path.suffix in (".ipynb", ".html") or path.name == "readme_results.md":
        return "rendered"
    return "exact"


def figure_data_path(rel_path: str) -> str:
    """The data table beside a figure file: ``figures/x.png`` -> ``figures/x.data.csv``."""
    path = PurePosixPath(rel_path)
    return str(path.with_name(path.stem + FIGURE_DATA_SUFFIX))


def how_compared(rel_path: str) -> str:
    """One line for the manifest: how ``make verify`` compares this file."""
    suffix = PurePosixPath(rel_path).suffix
    if suffix in FIGURE_SUFFIXES:
        return f"by the data it plots: {figure_data_path(rel_path)}"
    if suffix == ".ipynb":
        return "sources and outputs as text, numbers at tolerance (metadata and images left out)"
    if suffix == ".html":
        return "text, numbers at tolerance (embedded images left out)"
    if kind_of(rel_path) == "rendered":
        return "text, numbers at tolerance"
    return "bytes; if they differ, numbers at tolerance"


# ----------------------------------------------------------------------------- numbers
def _unit_of_last_digit(token: str) -> float | None:
    """10**-(decimals) of a printed number; None for an integer (which must match exactly)."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return None
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def compare_numbers(a: str, b: str) -> tuple[bool, float]:
    """Whether two printed numbers agree within tolerance, and their relative difference."""
    if a == b:
        return True, 0.0
    x, y = float(a), float(b)
    diff = abs(x - y)
    scale = max(abs(x), abs(y))
    rel = diff / max(scale, ATOL / RTOL)  # numbers that should be zero are judged by ATOL
    if diff <= RTOL * scale + ATOL:
        return True, rel
    units = [u for u in (_unit_of_last_digit(a), _unit_of_last_digit(b)) if u is not None]
    # neighbouring roundings of (nearly) the same value -- only where a unit of the last digit is
    # small beside the number (5 significant digits or more): in a short number such as the
    # paper's .45 vs .44, one unit is a real change, never a rounding edge
    if len(units) == 2 and diff <= min(units) * (1 + 1e-9) and min(units) <= UNIT_RTOL * scale:
        return True, rel
    return False, rel


# ----------------------------------------------------------------------------- text
def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _excerpt(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start:end if end >= 0 else len(text)].strip()
    return line if len(line) <= 100 else line[:97] + "..."


def compare_text(a: str, b: str) -> Comparison:
    """Compare two texts: identical, equal within tolerance (numbers), or different.

    >>> compare_text("b = 1.367053", "b = 1.367054").status
    'equal within tolerance'
    >>> compare_text("b = 1.3670", "b = 1.3672").status
    'different'
    >>> compare_text("N = 116", "N = 117").status
    'different'
    """
    if a == b:
        return Comparison(IDENTICAL)
    pa, pb = _NUMBER.split(a), _NUMBER.split(b)
    na, nb_ = list(_NUMBER.finditer(a)), list(_NUMBER.finditer(b))
    if pa != pb or len(na) != len(nb_):
        pos = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return Comparison(DIFFERENT, f"text differs at line {_line_of(a, pos)}: "
                                     f"{_excerpt(a, pos)!r} vs {_excerpt(b, pos)!r}")
    largest, where = 0.0, ""
    for ma, mb in zip(na, nb_):
        ok, rel = compare_numbers(ma.group(), mb.group())
        if not ok:
            return Comparison(DIFFERENT, f"line {_line_of(a, ma.start())}: {ma.group()} vs {mb.group()} "
                                         f"(relative difference {rel:.2g}) in {_excerpt(a, ma.start())!r}", rel)
        if rel >= largest and ma.group() != mb.group():
            largest, where = rel, f"line {_line_of(a, ma.start())}: {ma.group()} vs {mb.group()}"
    return Comparison(WITHIN, f"largest relative difference {largest:.2g}, {where}", largest)


def notebook_text(nb) -> str:
    """What a reader sees in a notebook, as text: each cell's source and outputs (streams
    merged, images as a placeholder, no metadata or execution counts)."""
    lines = []
    for i, cell in enumerate(nb.cells, 1):
        lines.append(f"### cell {i} ({cell.cell_type})\n{cell.source}")
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                lines.append(f"[{out.name}]\n{out.text}")
            elif out.output_type == "error":
                lines.append(f"[error] {out.ename}: {out.evalue}")
            else:
                for mime, value in sorted(out.get("data", {}).items()):
                    shown = f"<{mime}>" if mime.startswith("image/") else (
                        value if isinstance(value, str) else repr(value))
                    lines.append(f"[{mime}]\n{shown}")
    return "\n".join(lines)


def html_text(html: str) -> str:
    """The HTML report without its embedded images' bytes (each figure is compared through
    its data table instead)."""
    return _EMBEDDED_IMAGE.sub("data:image", html)


def comparable_text(rel_path: str, data: bytes) -> str:
    """The text of a generated file that :func:`compare_files` compares."""
    suffix = PurePosixPath(rel_path).suffix
    if suffix == ".gz":  # a large trial's processed table (helpers.table_io.COMPRESS_ABOVE)
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    if suffix == ".ipynb":
        import nbformat  # lazily: 1-3 s to import, and only notebooks need it

        return notebook_text(nbformat.reads(text, as_version=4))
    if suffix == ".html":
        return html_text(text)
    return text


def compare_files(rel_path: str, reference: bytes, candidate: bytes, *, read_sibling=None) -> Comparison:
    """Compare two versions of one generated file by its kind.

    Parameters
    ----------
    rel_path : str
        Path relative to the output root (decides the kind).
    reference, candidate : bytes
        The two versions.
    read_sibling : callable, optional
        ``read_sibling(rel) -> (reference_bytes, candidate_bytes)`` for another file of the
        same two trees: a figure is compared through its data table.
    """
    if reference == candidate:
        return Comparison(IDENTICAL)
    if PurePosixPath(rel_path).suffix in FIGURE_SUFFIXES:
        if read_sibling is None:
            return Comparison(DIFFERENT, "figure bytes differ and its data table was not given")
        data_rel = figure_data_path(rel_path)
        pair = read_sibling(data_rel)
        if any(side is None for side in pair):
            return Comparison(DIFFERENT, f"figure bytes differ and its data table {data_rel} is missing")
        result = compare_files(data_rel, *pair)
        if result.status == IDENTICAL:
            return Comparison(WITHIN, f"pixels/coordinates differ; its data table {data_rel} is identical")
        return Comparison(result.status, f"its data table {data_rel}: {result.detail}", result.largest)
    try:
        result = compare_text(comparable_text(rel_path, reference), comparable_text(rel_path, candidate))
    except UnicodeDecodeError:
        return Comparison(DIFFERENT, "binary file differs")
    if result.status == IDENTICAL:  # the bytes differ only where nothing is compared
        return Comparison(WITHIN, "same text; bytes differ only in what is not compared (embedded image bytes, "
                                  "metadata)")
    return result
