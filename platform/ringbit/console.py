"""How a command reports an error a user can fix: one red line on stderr and an exit code (2 for
usage and config errors, 1 for everything else), never a traceback. Shared by the CLI's modules."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)
