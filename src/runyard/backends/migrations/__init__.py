"""Alembic migrations for the store, run on start (``Store.start``)."""
