"""Release gatekeeper: progressive delivery with metric gates and automatic rollback."""
