"""MkDocs hooks: the tables the docs generate from the code, so they cannot drift from it.

A page holds a marker where a table goes: ``<!-- moksori:settings -->`` becomes the table of
every ``MOKSORI_*`` setting (:class:`common.config.Settings`), ``<!-- moksori:errors -->`` the
table of every error code the API answers (:data:`api.errors.ERRORS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from api.errors import ERRORS, ErrorKind
from common.config import PREFIX, REPO_ROOT, Settings

SETTINGS_MARKER = "<!-- moksori:settings -->"
ERRORS_MARKER = "<!-- moksori:errors -->"


_CODE = re.compile(r"(``.+?``|`[^`]*`)")


def _cell(text: str) -> str:
    """Docstring text as one Markdown table cell: one line; inline code in single backticks
    (a table cell keeps a pipe inside them, not inside double ones); other pipes escaped."""
    parts = _CODE.split(" ".join(text.split()))  # odd indexes are the code spans
    return "".join(
        f"`{part.strip('`')}`" if index % 2 else part.replace("|", "\\|")
        for index, part in enumerate(parts)
    )


def _code(text: str) -> str:
    return f"`{text}`" if text.strip() else "(empty)"


def _repo_relative(text: str) -> str:
    return text.replace(str(REPO_ROOT), "<repo>")


def show_default(field: FieldInfo) -> str:
    """A field's default as the docs show it: paths inside the repository as ``<repo>/...``,
    lists comma-separated as the environment writes them, and a secret's never."""
    if field.repr is False:  # a secret (the API keys): its value is not shown, not even empty
        return "(not shown)"
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, Path):
        shown = _repo_relative(str(value))
    elif isinstance(value, Enum):
        shown = str(value.value)
    elif isinstance(value, tuple | list | frozenset | set):
        shown = ",".join(str(item) for item in value)
    else:
        shown = _repo_relative(str(value))
    return _code(shown)


def settings_table(fields: Mapping[str, FieldInfo]) -> str:
    """A Markdown table of settings: variable, default, meaning (the field's docstring)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in fields.items():
        meaning = _cell(field.description or "")
        rows.append(f"| `{PREFIX}{name.upper()}` | {show_default(field)} | {meaning} |")
    return "\n".join(rows)


def errors_table(kinds: Iterable[ErrorKind]) -> str:
    """A Markdown table of error codes, by status: code, status, when the API answers it."""
    rows = ["| `code` | status | when |", "|---|---|---|"]
    for kind in sorted(kinds, key=lambda kind: (kind.status, kind.code)):
        rows.append(f"| `{kind.code}` | {kind.status} | {_cell(kind.when)} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs' hook: each marker in a page's Markdown replaced by its generated table."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table(Settings.model_fields))
    if ERRORS_MARKER in markdown:
        markdown = markdown.replace(ERRORS_MARKER, errors_table(ERRORS.values()))
    return markdown
