"""``GET /openapi.json``: a valid OpenAPI 3.1 document that cannot drift from the app's routes,
the README's contract or the error codes the code raises."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from flask import Flask

from api import create_app
from api.openapi import API_VERSION
from tests.conftest import REPO

AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask and flask-cors answer these for every route


def app_for(voice_dir: Path, storage_url: str) -> Flask:
    return create_app({"voice_dir": voice_dir, "storage_url": storage_url, "max_text_length": 300})


def routes(app: Flask) -> set[tuple[str, str]]:
    """(path in OpenAPI's template syntax, method) for every rule of the app."""
    pairs = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        pairs |= {(path, method) for method in rule.methods - AUTOMATIC_METHODS}
    return pairs


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}


def spec_of(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def test_spec_documents_exactly_the_routes(voice_dir: Path) -> None:
    """Every route of the app is in the spec with its methods and nothing else is, with local
    files (which adds /media/{key})."""
    app = app_for(voice_dir, "file:///tmp/moksori-openapi-test")
    spec = spec_of(app)
    assert documented(spec) == routes(app)
    assert ("/media/{key}", "GET") in documented(spec)
    assert len(documented(spec)) == 7


def test_spec_without_local_files_has_no_media(
    voice_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GCS the API serves no /media, and the spec says so."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # never contacted
    app = create_app(
        {"voice_dir": voice_dir, "storage_url": "gs://bucket/audio", "public_bucket": True}
    )
    spec = spec_of(app)
    assert documented(spec) == routes(app)
    assert "/media/{key}" not in spec["paths"]


def test_spec_is_valid_openapi_31(voice_dir: Path) -> None:
    """schemathesis loads it and its OpenAPI 3.1 meta-schema accepts it (a broken copy is
    refused, so the check can fail); every schema in it is valid JSON Schema 2020-12."""
    spec = spec_of(app_for(voice_dir, "file:///tmp/moksori-openapi-test"))
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["version"] == API_VERSION
    loaded = schemathesis.openapi.from_dict(copy.deepcopy(spec))
    loaded.validate()
    operations = [op.ok() for op in loaded.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        f"{m} {p}" for p, m in documented(spec)
    }
    broken = copy.deepcopy(spec)
    broken["paths"]["/api/texts"]["post"]["responses"] = "none"
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()
    for name, schema in spec["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_spec_limits_follow_the_settings(voice_dir: Path) -> None:
    """The text limit the spec states is the deployment's MOKSORI_MAX_TEXT_LENGTH."""
    spec = spec_of(app_for(voice_dir, "file:///tmp/moksori-openapi-test"))
    text = spec["components"]["schemas"]["TextRequest"]["properties"]["text"]
    assert text["maxLength"] == 300
    wait = spec["paths"]["/api/texts"]["post"]["parameters"][0]
    assert (wait["name"], wait["schema"]["minimum"], wait["schema"]["maximum"]) == ("wait", 1, 60)


def error_codes(spec: dict[str, Any]) -> set[tuple[str, str, int, str]]:
    """(path, method, status, code) for every documented error response."""
    found = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                for part in schema.get("allOf", []):
                    code = part.get("properties", {}).get("error", {}).get("properties", {})
                    for value in code.get("code", {}).get("enum", []):
                        found.add((path, method.upper(), int(status), value))
    return found


def test_every_error_the_code_raises_is_documented(voice_dir: Path) -> None:
    """Each ``ApiError(status, "code", ...)`` in api/ is in the spec under that status."""
    spec = spec_of(app_for(voice_dir, "file:///tmp/moksori-openapi-test"))
    documented_codes = {(status, code) for *_, status, code in error_codes(spec)}
    raised = set()
    for module in (REPO / "api").glob("*.py"):
        source = module.read_text(encoding="utf-8")
        for status, code in re.findall(r'ApiError\(\s*(\d{3}),\s*"([a-z_]+)"', source):
            raised.add((int(status), code))
    raised.add((413, "request_entity_too_large"))  # werkzeug's, named by api/errors.py
    assert len(raised) >= 15
    assert raised <= documented_codes, raised - documented_codes


def test_readme_error_tables_match_the_spec(voice_dir: Path) -> None:
    """The README's API section is the contract: each (status, code) its POST /api/texts table
    lists is in the spec for that operation, and the spec lists no other for it except the
    auth and rate-limit codes (401, 429) being added in parallel."""
    spec = spec_of(app_for(voice_dir, "file:///tmp/moksori-openapi-test"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### `POST /api/texts`") : readme.index("### `GET /api/jobs")]
    listed = set()
    for status, codes in re.findall(r"^\|[^|]+\| (\d{3}) \| (.+) \|$", section, re.M):
        listed |= {(int(status), code) for code in re.findall(r"`([a-z_]+)`", codes)}
    assert len(listed) >= 14
    texts = {
        (status, code)
        for path, method, status, code in error_codes(spec)
        if (path, method) == ("/api/texts", "POST")
    }
    assert listed <= texts, listed - texts
    assert {s for s, _ in texts - listed} <= {401, 429}
    assert "`404` (`unknown_job`)" in readme
    jobs = {(s, c) for p, _, s, c in error_codes(spec) if p == "/api/jobs/{job_id}"}
    assert (404, "unknown_job") in jobs
