"""Text from a descriptor or a data file, made safe to show.

A dataset's name, description, instrument names, column names and ids are the user's text:
shown in notebook Markdown, the HTML report, the README fragment or a figure, none of it may be
live markup (a dataset named ``Trial <img src=x onerror=alert(1)>`` must show as those
characters, never run a script in a reviewer's browser).
"""

from __future__ import annotations

import html
import re

#: Characters that make inline Markdown markup: emphasis, code, links and images (with the
#: brackets escaped, "(url)" is plain text), table cells, HTML (as entities, below).
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]#|~])")


def escape_markdown(text) -> str:
    """``text`` as literal Markdown: HTML special characters as entities, Markdown's markup
    characters backslash-escaped.

    >>> escape_markdown("Trial <img src=x onerror=alert(1)> *bold* [a](b)")
    'Trial &lt;img src=x onerror=alert(1)&gt; \\\\*bold\\\\* \\\\[a\\\\](b)'
    """
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(str(text), quote=False))
