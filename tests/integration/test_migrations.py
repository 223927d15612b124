"""Alembic: a single head, and upgrade -> downgrade -> upgrade on a real Postgres database."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.conftest import REPO, _create_database, _drop_database, database_url, run_migrations


def test_single_head() -> None:
    script = ScriptDirectory.from_config(Config(str(REPO / "alembic.ini")))
    assert len(script.get_heads()) == 1, f"several Alembic heads: {script.get_heads()}"


def test_upgrade_downgrade_upgrade_on_postgres() -> None:
    name = f"verity_migrations_{os.getpid()}"
    _create_database(name)
    url = database_url(name)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        run_migrations(url)
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
        _drop_database(name)
