"""`python -m gatekeeper.cli`."""

from .main import main

main()
