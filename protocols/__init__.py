"""Contracts at the top (ports, messages, errors, events, settings, faults; no client library is
imported here), adapters below by technology (redis/, postgres/, blobs/, embedded/, providers/)
and pure rules in domain/. The map: docs/ARCHITECTURE.md."""
