"""Prometheus metrics (``prometheus-client``): the instruments and the named functions that
actors, adapters and the HTTP front call (``instruments.py``), the multi-process directory
(``process.py``) and the text a scrape answers (``exposition.py``).

This package's ``__init__`` imports nothing: ``process.prepare`` must run before
``prometheus_client`` is first imported, for multi-process mode to be chosen.
"""
