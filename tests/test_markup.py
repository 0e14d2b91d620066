"""Nothing from the data is ever markup: a descriptor's or a data file's text (names, description,
instrument names, ids, values) shows as text in every output a reader opens (issue 19).

The end-to-end test declares a trial whose every text field carries an HTML and a Markdown
payload, runs it through the runner, and looks for the payloads *live* in the report, the
executed notebooks' outputs and the README fragment: an HTML tag as a tag, a Markdown link as a link.
"""

import re
from html.parser import HTMLParser

import nbformat
import numpy as np
import pytest

from helpers import markup, pipeline, simulate

HTML = "<img src=x onerror=alert(1)>"
MD = "[click](javascript:alert(2))"


def test_escape_markdown_leaves_no_tag_and_no_link():
    text = markup.escape_markdown(f"Trial {HTML} {MD} *x* `y` | z")
    assert "<" not in text and ">" not in text
    assert "[click](" not in text and "\\[click\\]" in text
    assert "\\*x\\*" in text and "\\`y\\`" in text and "\\|" in text


def _payload_trial(folder):
    folder.mkdir()
    trial = simulate.simulate_trial(n_participants=60, n_sessions=10, seed=4)
    s, p = trial.sessions.copy(), trial.participants.copy()
    ids = {pid: f"{pid}{HTML}" if i < 3 else pid for i, pid in enumerate(sorted(p["participant_id"]))}
    s["participant_id"] = s["participant_id"].map(ids)
    p["participant_id"] = p["participant_id"].map(ids)
    s.rename(columns={"alliance": f"alliance {MD}"}).to_csv(folder / "sessions.csv", index=False)
    p.to_csv(folder / "participants.csv", index=False)
    (folder / "dataset.yaml").write_text(
        f"name: 'Trial {HTML} {MD}'\n"
        f"description: 'About {HTML} and {MD}'\n"
        "files: {sessions: sessions.csv, participants: participants.csv}\nlayout: long\n"
        f"columns: {{alliance: 'alliance {MD}'}}\n"
        "instruments:\n"
        f"  alliance: {{name: 'WAI {HTML}', range: [1, 7], reliability: 0.85, score: 'mean {MD}',\n"
        f"             reliability_source: 'source {HTML}'}}\n"
        f"  symptoms: {{name: 'PCL {MD}', range: [0, 51]}}\n", encoding="utf-8")
    return folder


class _Elements(HTMLParser):
    """Every element of a page with an event handler or a javascript: link (what a browser runs)."""

    def __init__(self):
        super().__init__()
        self.live = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.live.append(f"<{tag} {name}={value!r}>")


def _live_html(text):
    """Payloads as live HTML: an element with an event handler or a javascript: link, as parsed
    (escaped text inside an attribute, such as an alt text, is not an element)."""
    parser = _Elements()
    parser.feed(text)
    return parser.live


def _live_markdown(text):
    """Payloads as live Markdown: a raw tag, or a link a renderer would follow (``\\](`` is text)."""
    return [m.group(0) for m in re.finditer(r"<img[^>]*onerror|(?<!\\)\]\(javascript:", text)]


@pytest.mark.slow
def test_no_text_from_the_data_is_live_markup_in_any_output(tmp_path):
    source = _payload_trial(tmp_path / "trial")
    out = tmp_path / "out"
    assert pipeline.main(["--set", f"data_source={source}", "--output-root", str(out), "--no-progress"]) == 0
    report = (out / "results" / "report.html").read_text(encoding="utf-8")
    assert not _live_html(report), _live_html(report)[:5]
    assert "onerror" in report  # the payload is there, as text
    fragment = (out / "results" / "readme_results.md").read_text(encoding="utf-8")
    assert not _live_markdown(fragment)
    for path in sorted((out / "results" / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            for o in cell.get("outputs", []):
                for mime, live in (("text/html", _live_html), ("text/markdown", _live_markdown)):
                    text = "".join(o.get("data", {}).get(mime, ""))
                    assert not live(text), (path.name, i, mime, live(text)[:3])
    assert np.isfinite(len(report))
