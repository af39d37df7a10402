"""Persistence of releases, steps and audit behind a small protocol."""
