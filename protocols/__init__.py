"""Contracts (messages, errors, settings, Protocols) and the adapters behind them."""
