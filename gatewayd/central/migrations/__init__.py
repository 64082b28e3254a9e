"""Alembic environment and versions for central's schema (installed with the package)."""
