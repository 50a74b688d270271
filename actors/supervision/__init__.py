"""Supervision: OTP-style supervisors on trio nurseries."""
