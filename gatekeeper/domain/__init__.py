"""Domain types: release spec, plan and steps, verdicts, errors. Imports nothing of ours."""
