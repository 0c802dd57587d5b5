"""Smithers' PostgreSQL store: ``postgresql://`` URLs, chosen through ``smithers.stores``."""

from smithers_store_postgres.store import PostgresStore

__all__ = ["PostgresStore"]
