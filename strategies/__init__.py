"""Strategies: one module each, turning a release spec into a plan."""
