"""The typer app every command module attaches to; `main` wraps it once for errors."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

# typer >= 0.29 carries its own click; its usage errors are not importable from typer's top level.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

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
    except NoArgsIsHelpError:
        return 0
    except UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "edgewise"
        fail(f"{exc.format_message()} (try '{path} --help')")
    except typer.Abort:
        fail("aborted")
    except typer.Exit as exc:
        return exc.exit_code
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run_app())
