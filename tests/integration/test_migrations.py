"""Alembic: a single head, upgrade -> downgrade -> upgrade on a real Postgres database and on SQLite (the embedded
database of `./verity up` and the demo), and the migrations building exactly the schema the ORM declares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.settings import sqlalchemy_url
from tests.conftest import PG_ADMIN_URL
from tests.support.services import REPO, run_migrations, scratch_database


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url))


def test_single_head() -> None:
    script = ScriptDirectory.from_config(Config(str(REPO / "alembic.ini")))
    assert len(script.get_heads()) == 1, f"several Alembic heads: {script.get_heads()}"


def test_upgrade_downgrade_upgrade_on_postgres() -> None:
    with scratch_database(PG_ADMIN_URL, f"verity_migrations_{os.getpid()}") as url:
        engine = _engine(url)
        try:
            tables = set(sa.inspect(engine).get_table_names())
            assert {
                "api_keys",
                "jobs",
                "results",
                "frame_scores",
                "feedback",
                "calibrations",
                "webhook_deliveries",
                "alembic_version",
            } <= tables
            run_migrations(url, "base", downgrade=True)
            assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
            run_migrations(url)
            assert "jobs" in sa.inspect(engine).get_table_names()
        finally:
            engine.dispose()


def test_migrations_build_the_schema_the_orm_declares() -> None:
    """What `alembic revision --autogenerate` would write after upgrading to head: nothing. A model changed
    without a migration (or a migration that drifted from the models) shows up here as the diff to write."""
    from db.models import Base

    with scratch_database(PG_ADMIN_URL, f"verity_autogen_{os.getpid()}") as url:
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
                diff: list[Any] = compare_metadata(context, Base.metadata)
        finally:
            engine.dispose()
    assert diff == [], "the ORM and the migrations disagree:\n" + "\n".join(map(repr, diff))


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    # SQLite cannot ALTER constraints: a migration that adds one must use batch mode, or embedded mode breaks.
    url = f"sqlite:///{tmp_path / 'verity.db'}"
    run_migrations(url)
    run_migrations(url, "base", downgrade=True)
    run_migrations(url)
    assert {"jobs", "results", "batches", "uploads"} <= set(sa.inspect(_engine(url)).get_table_names())
