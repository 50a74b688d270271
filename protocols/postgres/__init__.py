"""Postgres adapters: the job and voice store (asyncpg through trio-asyncio), its SQL and
migrations."""
