"""The engine: executors, step implementations, policy."""
