"""The jobs database: the only code that speaks SQL (SQLite or PostgreSQL, one schema).

`Catalog` is what the routes need (files and batches by owner), `WorkQueue` what the batch
workers need (leases, claims, commits, finalizing), `Outbox` what the webhook sender needs;
all run on one `AsyncEngine` from `connect`.
"""

from ocrflux.jobs.store.catalog import Catalog
from ocrflux.jobs.store.engine import connect, database_url, describe
from ocrflux.jobs.store.outbox import Outbox
from ocrflux.jobs.store.work import WorkQueue

__all__ = ["Catalog", "Outbox", "WorkQueue", "connect", "database_url", "describe"]
