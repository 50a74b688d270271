"""Test support: in-memory fakes of the Protocols, harnesses, process helpers."""
