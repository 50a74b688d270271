"""Embedded servers from pip wheels (Valkey, Postgres) for the zero-install default."""
