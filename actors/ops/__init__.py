"""What operators see: the figures behind ``GET /v1/admin/overview`` (overview.py)."""
