"""`gatekeeper serve` in the engine: config, lease and fencing, controller, the API facade."""
