"""Metric gates: specs, providers, pure verdict logic, backtest."""
