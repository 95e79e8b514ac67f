"""Schema migrations (Alembic) for both databases: `switchboard db upgrade`, and at server start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from switchboard.store.files import private_sqlite_files

_HERE = Path(__file__).parent


def sqlalchemy_url(url: str) -> str:
    """Our database URL in SQLAlchemy's spelling (asyncpg for PostgreSQL, the stdlib driver for SQLite)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def _config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`. Blocking: call it in a thread from async code."""
    if url.startswith("sqlite:///"):
        private_sqlite_files(url.removeprefix("sqlite:///"))  # before SQLite creates anything: files.py
    command.upgrade(_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(_config(url), revision)
