"""Blob stores: where audio bytes live, content-addressed."""
