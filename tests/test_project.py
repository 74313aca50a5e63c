"""The repository stands alone and greets a newcomer: home page, licence, dependencies."""

from __future__ import annotations

import ast
import tomllib
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SKIP_DIRS = {".venv", ".git", "node_modules", "staticfiles", "__pycache__", ".mypy_cache"}


def _repository_files() -> list[Path]:
    return [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
        and p.suffix in {".py", ".md", ".toml", ".sh", ".html", ".cfg", ".txt", ""}
    ]


def test_nothing_refers_to_a_contract_outside_the_repository() -> None:
    contract = "CONT" + "RACT"  # spelled apart so that this test does not find itself
    outside = ("../" + "shared", contract + ".md", contract + " section")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _repository_files()
        if any(needle in path.read_text(encoding="utf-8", errors="ignore") for needle in outside)
    ]
    assert offenders == []


@pytest.mark.django_db
def test_home_page_links_docs_openapi_metadata_and_admin(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for link in ('href="/docs/api.md"', 'href="/openapi.json"', 'href="/admin/"', "/metadata"):
        assert link in html
    # No organisation ids: tenants must not be discoverable from the outside.
    assert "clinic-a" not in html


@pytest.mark.django_db
def test_docs_are_served_as_markdown_and_only_those(client: Client) -> None:
    response = client.get("/docs/api.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.content.decode().startswith("# MediKIT scheduling API")
    assert client.get("/docs/secret.md").status_code == 404
    assert client.get("/docs/..%2Fpyproject.md").status_code == 404


def test_licence_is_eupl_1_2_text_and_spdx_in_pyproject() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("EUROPEAN UNION PUBLIC LICENCE v. 1.2")
    assert "Appendix" in text and len(text) > 10_000
    assert PYPROJECT["project"]["license"] == "EUPL-1.2"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for path in _repository_files():
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _pins() -> dict[str, str]:
    requirements = (
        PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    )
    out = {}
    for requirement in requirements:
        name, _, pinned = requirement.partition("==")
        out[name.split("[")[0].lower()] = pinned
    return out


def test_directly_imported_pydantic_is_declared_and_unused_pins_are_gone() -> None:
    imported = _imported_modules()
    pins = _pins()
    assert "pydantic" in imported and pins["pydantic"] == version("pydantic")
    assert "django_filters" in imported and "django-filter" in pins
    for unused in ("httpx", "polib"):
        assert unused not in imported and unused not in pins


def test_export_json_is_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "export.json" in ignored


@pytest.mark.django_db
def test_no_static_files_warning_without_collectstatic(client: Client) -> None:
    from django.test import override_settings

    from medikit.static import StaticFilesMiddleware

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StaticFilesMiddleware(lambda request: None)
    # With collected files expected, a missing STATIC_ROOT is still reported.
    with (
        override_settings(WHITENOISE_USE_FINDERS=False, STATIC_ROOT=str(ROOT / "no-such-dir")),
        pytest.warns(UserWarning, match="No directory at"),
    ):
        StaticFilesMiddleware(lambda request: None)
