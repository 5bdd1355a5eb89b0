"""The `aid` command: talks to a hub over HTTP. Exit codes: 0 ok, 1 failure, 2 bad usage or package."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from cli import output
from cli.alerts import alert
from cli.aliases import alias, promote, rollback
from cli.client import DEFAULT_URL, HubClient, HubReplyError, HubUnreachable
from cli.datasets import dataset
from cli.hubprocess import serve, worker
from cli.progress import human
from cli.review import review
from cli.shadow import compare, shadow
from cli.tokens import find_token, login, token
from hub.errors import HubError
from registry.manifest import FRAMEWORKS, PackageInvalid
from vocab.names import split_ref
from vocab.states import IN_FLIGHT, BuildStatus, DeploymentStatus, StepStatus

READ = click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")


class Failure(click.ClickException):
    exit_code = 1


class Usage(click.ClickException):
    exit_code = 2


def model_path(ref: str, suffix: str = "") -> tuple[str, str | None]:
    name, version = split_ref(ref)
    return f"/api/v1/models/{name}{suffix}", version


@click.group()
@click.option("--hub", envvar="AIDHUB_URL", default=DEFAULT_URL, show_default=True, help="The hub's URL.")
@click.option(
    "--token", envvar="AIDHUB_TOKEN", help="An API token (default: 'aid login's, else a local hub's)."
)
@click.pass_context
def cli(ctx: click.Context, hub: str, token: str | None) -> None:
    """aidhub: publish, serve and monitor models."""
    ctx.obj = HubClient(hub, token=find_token(hub, token))


for command in (serve, worker, alert, dataset, login, token, alias, promote, rollback, shadow, compare):
    cli.add_command(command)
cli.add_command(review)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True)
@click.option("--name", help="Model name (default: the folder's name).")
def init(directory: Path, framework: str, name: str | None) -> None:
    """Write a small, valid, runnable model package into DIRECTORY."""
    from cli.init import init_package

    try:
        written = init_package(directory, framework, name or directory.resolve().name.lower())
    except (FileExistsError, RuntimeError) as e:
        raise Usage(str(e)) from e
    click.echo(f"Wrote {len(written)} files to {directory}: {', '.join(p.name for p in written)}")
    click.echo(f"Next: edit aid.yaml and README.md, then 'aid publish {directory} --deploy'.")


def load_package(directory: Path):
    from registry.package import validate_package

    try:
        return validate_package(directory)
    except PackageInvalid as e:
        lines = "\n".join(f"  - {p}" for p in e.problems)
        raise Usage(f"{directory} is not a valid package ({len(e.problems)} problems):\n{lines}") from e


def part_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from cli.publishing import part_size_bytes

    return part_size_bytes(value)


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--deploy", is_flag=True, help="Deploy the version and wait until it serves.")
@click.option("--part-size", envvar="AIDHUB_PART_SIZE", default="32Mi", hidden=True, callback=part_size)
@click.pass_obj
def publish(client: HubClient, directory: Path, deploy: bool, part_size: int) -> None:
    """Validate the package in DIRECTORY and upload the files the hub does not have yet.

    An interrupted upload resumes where it stopped when you run this again."""
    from cli.publishing import publish_files, published_line

    package = load_package(directory)
    try:
        reply = publish_files(client, directory, part_size)
    except PackageInvalid as e:
        raise Usage(str(e)) from e
    except HubReplyError as e:
        if e.status in (413, 507):  # a limit or the hub's disk: the message names the setting to raise
            raise Usage("\n  - ".join([str(e), *e.errors])) from e
        raise
    click.echo(published_line(reply))
    if deploy:
        start_deploy(client, f"{package.manifest.name}@{package.manifest.version}", wait=True)


@cli.command()
@click.argument("ref")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to download into (default: ./NAME-VERSION).")  # fmt: skip
@click.pass_obj
def pull(client: HubClient, ref: str, out: Path | None) -> None:
    """Download the files of NAME[@VERSION], checking each one's sha256; resumes a partial pull."""
    from cli.pull import pull_version

    pull_version(client, ref, out)


def start_deploy(client: HubClient, ref: str, wait: bool) -> None:
    path, version = model_path(ref, "/deploy")
    reply = client.post(path, version=version)
    build, deployment = reply["build"], reply["deployment"]
    if deployment["status"] == DeploymentStatus.READY:
        click.echo(f"{reply['model']}@{reply['version']} is already serving at {deployment['url']}")
        return
    if not wait or build is None:
        click.echo(f"Deploying {reply['model']}@{reply['version']}: {reply['deployment']['status']}")
        return
    click.echo(f"Building {reply['model']}@{reply['version']} (build {build['id']}) ...")
    follow_build(client, build["id"])


def follow_build(client: HubClient, build_id: int, echo_log: bool = False) -> dict:
    """Poll the build until it ends, printing each finished step (and the log with `echo_log`)."""
    shown, steps_shown = 0, 0
    while True:
        build = client.get(f"/api/v1/builds/{build_id}")
        lines = build["log"].splitlines()
        if echo_log:
            for line in lines[shown:]:
                click.echo(line)
        shown = len(lines)
        finished = [s for s in build["steps"] if s["status"] != StepStatus.RUNNING]
        if not echo_log:
            for step in finished[steps_shown:]:
                click.echo(f"  {step['name']:<12} {step['status']:<9} {step['seconds']:.1f} s")
        steps_shown = len(finished)
        if build["status"] not in IN_FLIGHT:
            break
        time.sleep(0.5)
    if build["status"] == BuildStatus.CANCELLED:
        raise Failure(f"Build {build_id} was cancelled.")
    if build["status"] == BuildStatus.FAILED:
        tail = "\n".join(lines[-20:])
        raise Failure(f"Build {build_id} failed after {build['seconds']}s:\n{tail}")
    version = client.get(f"/api/v1/models/{build['model']}/versions/{build['version']}")
    click.echo(f"Ready in {build['seconds']}s at {version['deployment']['url']}")
    return build


@cli.command()
@click.argument("build_id", type=int)
@click.pass_obj
def cancel(client: HubClient, build_id: int) -> None:
    """Cancel build BUILD_ID (queued: at once; running: at its next step or log line)."""
    build = client.post(f"/api/v1/builds/{build_id}/cancel")
    click.echo(f"Build {build_id} of {build['model']}@{build['version']}: {build['status']}")


@cli.command(name="list")
@click.option("-q", "query", default="", help="Text to find in names and summaries.")
@click.option("--task", default="")
@click.option("--tag", default="")
@READ
@click.pass_obj
def list_models(client: HubClient, query: str, task: str, tag: str, as_json: bool) -> None:
    """List and search published models."""
    data = client.get("/api/v1/models", q=query, task=task, tag=tag)
    output.emit_json(data) if as_json else output.models(data)


@cli.command()
@click.argument("ref")
@READ
@click.pass_obj
def show(client: HubClient, ref: str, as_json: bool) -> None:
    """Show a model (NAME) or one version (NAME@VERSION or NAME@ALIAS)."""
    name, version = split_ref(ref)
    if version:
        data = client.get(f"/api/v1/models/{name}/versions/{version}")
        output.emit_json(data) if as_json else output.emit_json({k: data[k] for k in data if k != "card"})
        return
    data = client.get(f"/api/v1/models/{name}")
    output.emit_json(data) if as_json else output.model(data)


@cli.command()
@click.argument("ref")
@click.option("--wait/--no-wait", default=True, help="Wait until the version serves (default) or return.")
@click.pass_obj
def deploy(client: HubClient, ref: str, wait: bool) -> None:
    """Build the environment for NAME[@VERSION] and start serving it."""
    start_deploy(client, ref, wait)


@cli.command()
@click.argument("ref")
@click.pass_obj
def undeploy(client: HubClient, ref: str) -> None:
    """Stop serving NAME[@VERSION]."""
    path, version = model_path(ref, "/undeploy")
    reply = client.post(path, version=version)
    click.echo(f"{reply['model']}@{reply['version']}: {reply['deployment']['status']}")


@cli.command()
@READ
@click.pass_obj
def status(client: HubClient, as_json: bool) -> None:
    """Say whether the hub answers, which runner it uses and why."""
    data = client.get("/api/v1/status")
    if as_json:
        output.emit_json(data)
        return
    click.echo(f"hub      {client.url}  (ok)")
    click.echo(f"runner   {data['runner']}: {data['runner_reason']}")
    click.echo(f"database {data['database']}   home {data['home']}")
    counts = ", ".join(f"{n} {s}" for s, n in data["deployments"].items()) or "none"
    click.echo(f"deployments {counts}")
    queue = data["queue"]
    click.echo(
        f"builds   {queue['pending']} queued ({queue['storage']}), {queue['workers']} worker(s) in the hub"
    )
    if store := data.get("storage"):
        click.echo(
            f"storage  {human(store['stored_bytes'])} in {store['blobs']} blobs for "
            f"{human(store['logical_bytes'])} of files ({human(store['deduplicated_bytes'])} deduplicated)"
        )


@cli.command()
@click.argument("ref")
@click.option("--follow", "-f", is_flag=True, help="Follow a running build's log until it ends.")
@click.pass_obj
def logs(client: HubClient, ref: str, follow: bool) -> None:
    """Print the last build log and the server log of NAME[@VERSION]."""
    path, version = model_path(ref, "/logs")
    data = client.get(path, version=version)
    build = data["build"]
    if follow and build and build["status"] in IN_FLIGHT:
        follow_build(client, build["id"], echo_log=True)
        return
    if build:
        click.echo(f"== build {build['id']} ({build['status']}, {build['seconds']}s)\n{build['log']}")
    click.echo(f"== server log\n{data['server_log'] or '(empty)'}")


def read_inputs(inputs_json: str | None, file: Path | None, pairs: tuple[str, ...]) -> dict:
    try:
        if file:
            data = json.loads(file.read_text())
        elif inputs_json:
            data = json.loads(inputs_json)
        else:
            data = {k: json.loads(v) for k, _, v in (p.partition("=") for p in pairs)}
    except ValueError as e:
        raise Usage(f"The inputs are not valid JSON: {e}") from e
    return data.get("inputs", data) if isinstance(data, dict) else data


@cli.command()
@click.argument("ref")
@click.option(
    "--input", "-i", "pairs", multiple=True, help="NAME=JSON, e.g. -i 'features=[[5.1,3.5,1.4,0.2]]'."
)
@click.option("--inputs", "inputs_json", help="All inputs as JSON: '{\"features\": [[...]]}'.")
@click.option("--file", "-f", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@READ
@click.pass_obj
def predict(client: HubClient, ref: str, pairs, inputs_json, file, as_json: bool) -> None:
    """Call NAME[@VERSION] through the hub and print the outputs and the prediction id."""
    inputs = read_inputs(inputs_json, file, pairs)
    if not inputs:
        raise Usage("Give the inputs: -i NAME=JSON, --inputs JSON or --file FILE.")
    path, version = model_path(ref, "/predict")
    reply = client.post(path, {"inputs": inputs}, version=version)
    if as_json:
        output.emit_json(reply)
        return
    click.echo(json.dumps(reply["outputs"]))
    click.echo(f"id {reply['id']}  ({reply['model']}@{reply['version']}, {reply['latency_ms']} ms)", err=True)


@cli.command()
@click.argument("prediction_id", required=False)
@click.option("--model", "model_ref", help="Feedback on a model in general (NAME[@VERSION]) instead.")
@click.option("--correct/--wrong", default=None, help="Was the answer right?")
@click.option("--label", help="The right answer.")
@click.option("--rating", type=click.IntRange(1, 5), help="1 (bad) to 5 (great).")
@click.option("--comment")
@click.pass_obj
def feedback(client: HubClient, prediction_id, model_ref, correct, label, rating, comment) -> None:
    """Say whether prediction PREDICTION_ID was right (or give --model feedback)."""
    fields = {"correct": correct, "label": label, "rating": rating, "comment": comment}
    fields = {k: v for k, v in fields.items() if v is not None}
    if bool(prediction_id) == bool(model_ref):
        raise Usage("Give either a PREDICTION_ID or --model NAME.")
    if prediction_id:
        reply = client.post(f"/api/v1/predictions/{prediction_id}/feedback", fields)
    else:
        path, version = model_path(model_ref, "/feedback")
        reply = client.post(path, fields, version=version)
    click.echo(f"Thanks: feedback {reply['id']} recorded for {reply['model']}.")


@cli.command()
@click.argument("ref")
@click.option("--window", default="24h", show_default=True, help="How far back: 1h, 24h, 7d, 30d or all.")
@click.option("--step", default=None, help="The series' step, e.g. 5m or 1h (default: 48-96 points).")
@READ
@click.pass_obj
def scorecard(client: HubClient, ref: str, window: str, step: str | None, as_json: bool) -> None:
    """Requests, errors, latency, feedback accuracy and rating of NAME[@VERSION] over a window."""
    path, version = model_path(ref, "/scorecard")
    data = client.get(path, version=version, window=window, step=step)
    output.emit_json(data) if as_json else output.scorecard(data)


@cli.command()
@click.argument("ref")
@click.option("--window", default="24h", show_default=True, help="How far back to look: 90m, 24h, 7d.")
@READ
@click.pass_obj
def drift(client: HubClient, ref: str, window: str, as_json: bool) -> None:
    """Compare the recent inputs and outputs of NAME[@VERSION] with its reference, now (Evidently)."""
    path, version = model_path(ref, "/drift")
    run = client.post(path, {"window": window}, version=version)
    output.emit_json(run) if as_json else output.drift(run)
    if run["status"] == "failed":
        raise Failure(f"The drift run failed: {run['error']}")


@cli.command()
@click.argument("task")
@READ
@click.pass_obj
def leaderboard(client: HubClient, task: str, as_json: bool) -> None:
    """Rank every version of the models that solve TASK by feedback accuracy."""
    data = client.get(f"/api/v1/tasks/{task}/leaderboard")
    output.emit_json(data) if as_json else output.leaderboard(data)


def main() -> None:
    """`aid`: bad usage, input or settings exit 2; an unreachable hub and other failures exit 1."""
    try:
        cli(standalone_mode=False)
    except HubUnreachable as e:
        fail(str(e), [], 1)
    except (HubReplyError, HubError) as e:
        fail(str(e), e.errors, 2 if e.status in (400, 422) else 1)  # bad input: 2
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


def fail(message: str, errors: list[str], code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    for line in errors:
        click.echo(f"  - {line}", err=True)
    sys.exit(code)
