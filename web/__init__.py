"""The HTTP front: a quart-trio app factory."""
