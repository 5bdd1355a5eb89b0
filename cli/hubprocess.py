"""The commands that run the hub's own processes: `aid serve` (the hub) and `aid worker` (builds).

They import the hub's modules when they run, not when `aid` starts: the other commands stay quick, and
the web app and the Hub load in gunicorn's worker, after gevent has patched the standard library."""

from __future__ import annotations

from pathlib import Path

import click

from cli.logfile import LEVELS, log_file_in
from hub.errors import SettingInvalid

HOME = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), help="Default: AIDHUB_HOME or ~/.aidhub"
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@HOME
@click.option(
    "--runner", type=click.Choice(["auto", "process", "container"]), help="Default: AIDHUB_RUNNER or auto"
)
@click.option("--connections", default=1000, show_default=True, type=int, help="Concurrent connections.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Web worker processes; above 1 the model supervision runs in a process of its own. "
    "Default: half the cores, at least 1.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    help="What the log file keeps.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show the log here too (else only warnings).")
def serve(
    host: str,
    port: int,
    home: Path | None,
    runner: str | None,
    connections: int,
    workers: int | None,
    log_level: str,
    verbose: bool,
) -> None:
    """Run the hub (web catalog, API, model supervision) in the foreground; it logs to a file."""
    from cli.serve import default_workers
    from cli.serve import serve as run_server
    from hub.config import Config

    overrides = {k: v for k, v in {"home": home, "runner": runner}.items() if v}
    config = Config.load(host=host, port=port, **overrides)
    log_file = log_file_in(config.home)
    workers = workers or default_workers()
    several = f", {workers} web workers" if workers > 1 else ""
    click.echo(f"aidhub on http://{host}:{port}  (home {config.home}{several})")
    click.echo(f"hub log  {log_file}" + ("" if verbose else "  (aid serve -v shows it here)"))
    run_server(config, log_file, log_level, verbose, connections, workers)


@click.command()
@click.option("--workers", default=2, show_default=True, type=int, help="Builds run at once.")
@HOME
def worker(workers: int, home: Path | None) -> None:
    """Run builds from the hub's queue (AIDHUB_QUEUE_URL=redis://...) until interrupted."""
    import signal

    from hub.config import Config

    config = Config.load(**({"home": home} if home else {}))
    if not config.queue_url:
        raise SettingInvalid(
            "Set AIDHUB_QUEUE_URL=redis://HOST:6379/0 (the hub's queue); the embedded queue "
            "belongs to the hub process, which runs its own builds."
        )
    from hub.hub import Hub

    hub = Hub(config, background=False)
    signal.signal(signal.SIGTERM, lambda *_: hub.stop_worker())
    click.echo(f"aid worker: {workers} build worker(s) on {config.queue_url} (runner {hub.runner.kind})")
    hub.run_worker(workers)
