"""The built wheel works outside a checkout: it carries the migrations, upgrades an empty
database and knows the head that /readyz compares against."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo
from auditor.store import schema

CHECKOUT = Path(__file__).resolve().parents[2]

# Run the installed code as `auditor` would, from a folder with no checkout in sight.
_RUN_CLI = "import sys; from auditor.cli import main; sys.argv = ['auditor', *sys.argv[1:]]; main()"
_SHOW = (
    "import auditor, web.ops; print(auditor.__file__); print(','.join(web.ops.migration_heads()))"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, unpacked as pip would lay it out in site-packages
    (its dependencies come from the test environment). Built without build isolation: with
    it pip would install setuptools into a fresh environment first, most of this file's
    time; the dev extra pins a setuptools as recent as pyproject's build requirement."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            ".",
        ],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("auditor-*.whl")
    site = out / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _run(site: Path, code: str, *args: str, url: URL | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AUDITOR_DATABASE_URL"}
    env["PYTHONPATH"] = str(site)
    if url is not None:
        env["AUDITOR_DATABASE_URL"] = url.render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=site.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_wheel_ships_every_migration(installed: Path) -> None:
    shipped = sorted(p.name for p in (installed / "auditor/migrations/versions").glob("*.py"))
    in_checkout = sorted(p.name for p in (CHECKOUT / "migrations/versions").glob("*.py"))
    assert shipped == in_checkout
    assert (installed / "auditor/migrations/env.py").is_file()


def test_installed_code_knows_the_head_and_upgrades_an_empty_database(
    installed: Path, server_url: URL
) -> None:
    module, heads = _run(installed, _SHOW).splitlines()
    assert module.startswith(str(installed)), "the checkout was imported, not the wheel"
    from web.ops import migration_heads

    assert heads == ",".join(migration_heads())

    name = f"auditor_wheel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        url = server_url.set(database=name)
        assert "partitions created" in _run(installed, _RUN_CLI, "db", "upgrade", url=url)
        assert "schema ok" in _run(installed, _RUN_CLI, "db", "check", url=url)
    finally:
        with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def test_the_checkout_reads_migrations_through_the_package_link() -> None:
    assert schema.MIGRATIONS.resolve() == (CHECKOUT / "migrations").resolve()
