"""The embedded PostgreSQL of the tests (tools/harness/pgkit.py, shared with the benchmarks)."""

from tools.harness.pgkit import POSTGRES_BIN_PATH, EmbeddedPostgres, psql

__all__ = ["POSTGRES_BIN_PATH", "EmbeddedPostgres", "psql"]
