"""Traffic routers: one module per kind, a factory that builds one from the release spec."""
