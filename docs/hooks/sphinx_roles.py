# ruff: noqa: INP001 - a file MkDocs loads by path (mkdocs.yml `hooks:`), not a package
"""MkDocs hook: show the docstrings' Sphinx markup as plain code in the API reference.

The package's docstrings are written for ``help()`` and Sphinx alike: roles such as
``:class:`JobSnapshot``` and literal blocks introduced by ``::``. mkdocstrings renders the
docstrings as Markdown, where the role's name would stay in the text (":class:" before
the code) and each ``::`` would end a sentence. This turns a role into its code alone
(``~a.b.C`` into ``C``, as Sphinx shows it) and ``::`` into ``:``.
"""

from __future__ import annotations

import re
from typing import Any


_ROLE = re.compile(r":(?:class|meth|attr|func|data|mod|exc|obj|const):<code>([^<]*)</code>")
_LITERAL_INTRO = re.compile(r"::(?=</p>)")


def _code(match: re.Match[str]) -> str:
    target = match.group(1)
    if target.startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"<code>{target.lstrip('.')}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """Rewrite the roles and ``::`` of a page's rendered HTML (the API reference's)."""
    return _LITERAL_INTRO.sub(":", _ROLE.sub(_code, html))
