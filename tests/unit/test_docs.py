"""The documentation site builds strictly, and its generated tables say what the code says."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic.fields import FieldInfo

from api.errors import ERRORS
from common.config import Settings
from docs_support.hooks import show_default
from tests.support import REPO


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict``, as ``make docs`` runs it, into ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=REPO,  # the hooks import the project's packages from here
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from the repository's own mkdocs.yml and docs/."""
    out = tmp_path_factory.mktemp("site")
    result = build(REPO / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr
    return out


def rows(page: Path, section: str = "") -> list[list[str]]:
    """The text of every table row's cells on a built page (header rows have none), from the
    heading whose id is ``section`` on."""
    text = page.read_text(encoding="utf-8")
    text = text[text.index(f'id="{section}"') :] if section else text
    found = []
    for row in re.findall(r"<tr>(.*?)</tr>", text, flags=re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        if cells:
            found.append(
                [" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split()) for c in cells]
            )
    return found


def test_site_builds_strictly(site: Path) -> None:
    """Every page in the nav is built, the screenshot with them."""
    names = ["api", "openai", "configuration", "voices", "operations", "performance"]
    for name in [*names, "deployment", "robustness"]:
        assert (site / name / "index.html").is_file(), name
    assert (site / "web.png").is_file()


def test_configuration_page_lists_every_setting(site: Path) -> None:
    """One row per setting, in the model's order: its variable, its default and its docstring."""
    table = [row for row in rows(site / "configuration" / "index.html") if len(row) == 3]
    assert [row[0] for row in table] == [
        f"MOKSORI_{name.upper()}" for name in Settings.model_fields
    ]
    for (variable, default, meaning), field in zip(
        table, Settings.model_fields.values(), strict=True
    ):
        assert meaning == " ".join((field.description or "").replace("`", "").split()), variable
        assert default, variable
    shown = {row[0]: row[1] for row in table}
    assert shown["MOKSORI_MAX_TEXT_LENGTH"] == "1000"
    assert shown["MOKSORI_VOICE_DIR"] == "<repo>/voice_model"
    assert shown["MOKSORI_API_KEYS"] == "(not shown)"
    assert str(REPO) not in (site / "configuration" / "index.html").read_text(encoding="utf-8")


def test_a_secret_default_is_never_shown() -> None:
    """A setting declared ``repr=False`` keeps its default out of the docs."""
    assert show_default(FieldInfo(default=("s3cret-key-0123456789",), repr=False)) == "(not shown)"
    assert show_default(FieldInfo(default=("a", "b"))) == "`a,b`"
    assert show_default(FieldInfo(default="")) == "(empty)"


def test_api_page_lists_every_error_code(site: Path) -> None:
    """The error table has one row per code of the registry, with its status and sentence."""
    table = [row for row in rows(site / "api" / "index.html", "error-codes") if len(row) == 3]
    listed = {code: (int(status), when) for code, status, when in table}
    assert len(listed) == len(table) >= 10, "a code is listed twice, or none is"
    assert listed == {
        kind.code: (kind.status, " ".join(kind.when.replace("`", "").split()))
        for kind in ERRORS.values()
    }


def test_readme_is_short_and_its_links_resolve() -> None:
    """The README stays a front door (the docs site holds the rest), and each of its relative
    links names a file here: the strict build does not read the README."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    links = [link for link in re.findall(r"\]\(([^)#]+)", readme) if "://" not in link]
    assert len(links) >= 9
    for link in links:
        assert (REPO / link).is_file(), link


BREAKAGES = {
    "a link to a missing page": ("index.md", "\n[gone](no-such-page.md)\n"),
    "a link to a missing anchor": ("index.md", "\n[gone](api.md#no-such-section)\n"),
    "a page left out of the nav": ("orphan.md", "# Orphan\n"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_strict_build_fails_on(breakage: str, tmp_path: Path) -> None:
    """The build in ``make test`` refuses a broken link, a missing anchor or a page that the
    navigation leaves out (mkdocs.yml's ``validation``), not only warns about it."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    name, text = BREAKAGES[breakage]
    with (docs / name).open("a", encoding="utf-8") as page:
        page.write(text)
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(REPO / hook) for hook in config["hooks"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "Aborted with 1 warnings in strict mode" in result.stdout + result.stderr
