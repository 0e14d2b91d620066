"""The manifest of generated files, how a run publishes them, and ``make verify``.

``results/manifest.json`` lists every generated file with its kind (``exact`` or
``rendered``, :func:`helpers.compare.kind_of`), how it is compared and its sha256, plus the
parameters, the package versions and a digest of the code that made it (:func:`code_digest`).

A run never rewrites a published file whose new version shows the same thing
(:func:`reconcile`): a table whose numbers moved only within tolerance, a figure whose data
table did, a notebook whose text did. So a default run on another machine (another BLAS
kernel) leaves the committed outputs, and ``git status``, untouched; the files kept are listed.
The manifest, too, is rewritten only when a file, a parameter or the code changed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from importlib import metadata
from pathlib import Path

from helpers import compare, environment, paths
from helpers.table_io import atomic_write_bytes, atomic_write_text

MANIFEST = "results/manifest.json"
#: Folders and files (relative to the output root) of generated outputs that the manifest lists.
GENERATED_DIRS = ("data/processed", "results/tables", "results/notebooks", "figures")
GENERATED_FILES = ("results/report.html", "results/readme_results.md")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def generated_paths(output_root) -> list[str]:
    """Relative paths of every generated file under ``output_root`` (dot-files left out)."""
    root = Path(output_root)
    found = [p for d in GENERATED_DIRS for p in (root / d).rglob("*") if p.is_file() and not p.name.startswith(".")]
    found += [root / f for f in GENERATED_FILES if (root / f).is_file()]
    return sorted(p.relative_to(root).as_posix() for p in found)


def generated_files(output_root) -> dict:
    """``{relative path: {"kind", "compared_by", "sha256", "bytes"}}`` of every generated file."""
    root = Path(output_root)
    return {rel: {"kind": compare.kind_of(rel), "compared_by": compare.how_compared(rel),
                  "sha256": sha256(root / rel), "bytes": (root / rel).stat().st_size}
            for rel in generated_paths(root)}


# ----------------------------------------------------------------------------- the code
def code_files(root=None) -> list[Path]:
    """What makes the outputs: the library, the notebooks, the default parameters, the lock."""
    root = Path(root or paths.ROOT)
    files = sorted((root / "src" / "helpers").rglob("*.py")) + sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return files + [root / "params" / "default.yaml", root / "requirements.lock"]


def code_digest(root=None) -> str:
    """sha256 of the code that makes the outputs (:func:`code_files`): Python files and
    parameters as text with ``\\n`` line endings, notebooks by their cells' sources only (their
    stored outputs are results, not code). Stable across re-runs and machines; changes exactly
    when the code does. Recorded in the manifest instead of a git commit, which a re-run
    cannot know before it is made."""
    import nbformat  # lazily: 1-3 s to import, and only the notebooks' sources need it

    root = Path(root or paths.ROOT)
    h = hashlib.sha256()
    for path in code_files(root):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        if path.suffix == ".ipynb":
            text = "\n".join(f"{c.cell_type}\n{c.source}" for c in nbformat.reads(text, as_version=4).cells)
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + text.encode("utf-8") + b"\0")
    return h.hexdigest()


def package_versions() -> dict:
    """Installed version of every package pinned in requirements.lock (plus python)."""
    versions = {"python": platform.python_version()}
    for name in sorted(environment.read_lock()):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------- writing
def build_manifest(output_root, params: dict) -> dict:
    return {
        "description": "Generated outputs of one run of `python -m helpers.pipeline`. `make verify` re-runs it "
                       "in a temporary folder and compares every file by its kind: exact files by bytes (numbers "
                       f"at relative tolerance {compare.RTOL:g} if the bytes differ), rendered files by what they "
                       "show (see compared_by). code_sha256: helpers.manifest.code_digest() of the code that made them.",
        "code_sha256": code_digest(),
        "seed": params.get("seed"),
        "parameters": params,
        "packages": package_versions(),
        "files": generated_files(output_root),
    }


def _same_record(old: dict, new: dict) -> bool:
    """Whether two manifests describe the same outputs of the same code and parameters (the
    environment that made them may differ: kept files were made by the old one)."""
    return all(old.get(k) == new.get(k) for k in ("code_sha256", "parameters", "files"))


def write_manifest(output_root, params: dict, *, published_root=None) -> Path:
    """Write ``results/manifest.json`` under ``output_root``; when ``published_root`` holds a
    manifest with the same files, parameters and code, keep that one (byte for byte)."""
    new = build_manifest(output_root, params)
    target = Path(output_root) / MANIFEST
    old_path = Path(published_root) / MANIFEST if published_root else None
    if old_path is not None and old_path.is_file():
        old = json.loads(old_path.read_text(encoding="utf-8"))
        if _same_record(old, new):
            return atomic_write_bytes(target, old_path.read_bytes())
    return atomic_write_text(target, json.dumps(new, indent=1) + "\n")


def read_manifest(path=None) -> dict:
    return json.loads(Path(path or paths.ROOT / MANIFEST).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- comparing
def compare_trees(reference_root, candidate_root, rels=None) -> dict:
    """``{relative path: Comparison}`` of the files ``rels`` (default: all generated files of
    either tree) between two output trees; a file missing on one side is different."""
    ref, cand = Path(reference_root), Path(candidate_root)
    rels = sorted(set(rels if rels is not None else generated_paths(ref) + generated_paths(cand)))

    def read_pair(rel):
        return _read(ref / rel), _read(cand / rel)

    results = {}
    for rel in rels:
        a, b = read_pair(rel)
        if a is None or b is None:
            where = "the reference" if a is None else "the new run"
            results[rel] = compare.Comparison(compare.DIFFERENT, f"missing from {where}")
        else:
            results[rel] = compare.compare_files(rel, a, b, read_sibling=read_pair)
    return results


def _read(path: Path):
    return path.read_bytes() if path.is_file() else None


def reconcile(staging, published_root) -> list[str]:
    """Keep every published file whose staged version shows the same thing.

    For each staged file that differs in bytes from its published twin but is equal within
    tolerance (:func:`helpers.compare.compare_files`), the published bytes are copied back
    into the staging folder, so publishing leaves that file untouched. Returns one line per
    file kept, with the largest difference.
    """
    staging, published_root = Path(staging), Path(published_root)
    rels = [r for r in generated_paths(staging) if (published_root / r).is_file()]
    # decide on every file first: a figure is judged by its data table *as the run wrote it*
    decisions = compare_trees(published_root, staging, rels)
    # A notebook or page that embeds figures is compared by its text: when a figure it shows
    # changed, keeping it would keep the old picture. Any figure published anew (changed, or
    # new) therefore publishes the documents that embed figures anew too.
    figure_changed = any(
        compare.kind_of(rel) == "rendered" and rel.endswith(compare.FIGURE_SUFFIXES)
        and decisions.get(rel, compare.Comparison(compare.DIFFERENT)).status == compare.DIFFERENT
        for rel in generated_paths(staging))
    kept = []
    for rel, result in decisions.items():
        if result.status == compare.WITHIN and not (figure_changed and _embeds_figures(rel)):
            shutil.copyfile(published_root / rel, staging / rel)
            kept.append(f"{rel}: {result}")
    return kept


def _embeds_figures(rel: str) -> bool:
    """Executed notebooks and the HTML report carry the figures' pictures inside them."""
    return rel.endswith((".ipynb", ".html"))


def verify_outputs(candidate_root, reference_root=None, manifest_path=None) -> list[tuple[str, str, object]]:
    """Compare a fresh run's outputs with the committed ones (``make verify``).

    Returns ``(path, kind, Comparison)`` per file, sorted by path. The committed files are
    first checked against the manifest's sha256: a committed file edited after the run that
    made it is reported as different.
    """
    reference_root = Path(reference_root or paths.ROOT)
    recorded = read_manifest(manifest_path or reference_root / MANIFEST)["files"]
    rows = []
    for rel, info in sorted(recorded.items()):
        committed = reference_root / rel
        if committed.is_file() and sha256(committed) != info["sha256"]:
            rows.append((rel, info["kind"], compare.Comparison(
                compare.DIFFERENT, "the committed file does not match the manifest (edited after the run?)")))
    checked = {r for r, _, _ in rows}
    now = set(generated_paths(candidate_root))
    for rel, result in compare_trees(reference_root, candidate_root, sorted((set(recorded) | now) - checked)).items():
        if rel not in recorded:
            result = compare.Comparison(compare.DIFFERENT, "made by the re-run but not in the manifest")
        rows.append((rel, compare.kind_of(rel), result))
    return sorted(rows, key=lambda r: r[0])


def format_verify(rows) -> tuple[str, bool]:
    """The lines ``make verify`` prints, and whether everything agreed."""
    lines = [f"{status_mark(c)}{rel} [{kind}]: {c}" for rel, kind, c in rows]
    counts = {s: sum(c.status == s for _, _, c in rows) for s in (compare.IDENTICAL, compare.WITHIN, compare.DIFFERENT)}
    ok = counts[compare.DIFFERENT] == 0
    lines.append(f"verify: {len(rows)} files: {counts[compare.IDENTICAL]} identical, {counts[compare.WITHIN]} equal "
                 f"within tolerance, {counts[compare.DIFFERENT]} different -> " + ("PASSED" if ok else "FAILED"))
    return "\n".join(lines), ok


def status_mark(c) -> str:
    return {compare.IDENTICAL: "  ", compare.WITHIN: "~ ", compare.DIFFERENT: "X "}[c.status]
