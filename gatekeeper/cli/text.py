"""Text on the console: our own markup styles it, data is printed exactly as given."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def lit(value: object) -> str:
    """``value`` as markup that prints as itself.

    Names, reasons and messages are data: rich would read "[a-z0-9]" or "[bold]" in them
    as tags and drop them, so every piece of data goes through here before rich sees it.
    """
    return escape(str(value))


def styled(style: str, value: object) -> str:
    """``value`` printed as itself in ``style``, e.g. a verdict in its colour."""
    return f"[{style}]{lit(value)}[/{style}]"


def print_problem(console: Console, label: str, problem: object) -> None:
    """A refusal or failure: the label in red, the message word for word on one line."""
    # soft_wrap: a narrow terminal must not break a file path or a value in two
    console.print(f"{styled('red', label + ':')} {lit(problem)}", highlight=False, soft_wrap=True)
