"""Blob stores: where audio bytes live, content-addressed (files.py: a local directory; s3.py:
an S3-compatible object store shared by every host).

The errors both stores raise live here, so callers need no adapter's module: a write or read
that failed is ``BlobStoreError`` (retryable: a job whose audio could not be stored is retried
later, never failed for good), a missing blob is ``BlobMissing`` (a ``NotFound`` that is also a
``FileNotFoundError``, which is what the routes and the storybook outputs catch).
"""

from __future__ import annotations

from protocols.errors import ChorusError, NotFound


class BlobStoreError(ChorusError):
    """The blob store could not be read or written (disk full, permissions, object store down
    or refusing...). Retryable: the audio was paid for, so the job is tried again later."""

    code = "blob_store_error"
    status = 503
    title = "Audio storage error"
    retryable = True


class BlobMissing(NotFound, FileNotFoundError):
    """No blob at that path."""

    code = "not_found"
    title = "Not found"
