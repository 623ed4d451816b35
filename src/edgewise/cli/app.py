"""The typer app every command module attaches to; `main` wraps it once for errors."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from edgewise.errors import UserError

app = typer.Typer(
    name="edgewise",
    help="Make deep networks fit edge devices, with costs that are measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Print one error line and exit with code 2 (the user's mistake)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(2)


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; a `UserError` or a usage mistake becomes one line and exit code 2."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="edgewise", standalone_mode=False)
    except UserError as exc:
        fail(str(exc))
    except click.exceptions.UsageError as exc:
        hint = f" (see 'edgewise {exc.ctx.command_path.split(' ', 1)[-1]} --help')" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}" if exc.ctx and exc.ctx.parent else exc.format_message())
    except click.exceptions.Abort:
        fail("aborted")
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run_app())
