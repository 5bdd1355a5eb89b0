"""`aid review NAME`: the predictions waiting for a human look (the review queue, docs/review.md);
`--label ID LABEL` or `--skip ID` answers one, and `--measure`, `--threshold`, `--per-minute`,
`--max-waiting` change how they are chosen."""

from __future__ import annotations

import click

from cli import output
from cli.client import HubClient

MEASURES = ("max_probability", "margin", "entropy")


@click.command()
@click.argument("name")
@click.option("--label", "answer", nargs=2, metavar="ID LABEL", help="Label item ID (feedback on its call).")
@click.option("--skip", "skip", type=int, metavar="ID", help="Skip item ID.")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Items listed at most."
)
@click.option("--measure", type=click.Choice(MEASURES), help="Confidence measure of the model's answers.")
@click.option(
    "--threshold", type=float, help="Doubtful below it (max_probability, margin) or above it (entropy)."
)
@click.option("--per-minute", type=int, help="Items per version per minute of calls at most.")
@click.option("--max-waiting", type=int, help="No new items while this many wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_obj
def review(client: HubClient, name: str, answer, skip, limit: int, as_json: bool, **rules) -> None:
    """List the predictions of NAME waiting for review, most doubtful first; or label or skip one."""
    path = f"/api/v1/models/{name}/review"
    rules = {k: v for k, v in rules.items() if v is not None}
    if sum(map(bool, (answer, skip is not None, rules))) > 1:
        raise click.UsageError(
            "Give one of --label ID LABEL, --skip ID or the rules (--measure ...), not several."
        )
    if answer or skip is not None:
        item_id, body = (answer[0], {"label": answer[1]}) if answer else (skip, {"skip": True})
        if not str(item_id).isdigit():
            raise click.UsageError(f"ID {item_id!r} is not an item number; 'aid review {name}' lists them.")
        data = client.post(f"{path}/{item_id}", body)
        output.emit_json(data) if as_json else click.echo(answered(data))
        return
    data = client.put(f"{path}/rules", rules) if rules else client.get(path, limit=limit)
    output.emit_json(data) if as_json else listing(data, client.url)


def answered(data: dict) -> str:
    item, given = data["item"], data["feedback"]
    if given is None:
        return f"Skipped item {item['id']}."
    verdict = {True: "the model was right", False: f"the model answered {item['answer']}", None: "recorded"}
    return (
        f"Labelled item {item['id']} {given['label']}: {verdict[given['correct']]} (feedback {given['id']})."
    )


def listing(data: dict, url: str) -> None:
    counts, rules, name = data["counts"], data["rules"], data["model"]
    click.echo(
        f"{name}: {counts['waiting']} waiting, {counts['labelled']} labelled, {counts['skipped']} skipped. "
        f"Chosen by {rules['measure']} (threshold {rules['threshold']:g}), disagreement and drift; "
        f"at most {rules['per_minute']} a minute per version, {rules['max_waiting']} waiting."
    )
    if not data["labels"]:
        click.echo(f"{name} has no labels: give its versions labels: in aid.yaml to review its answers.")
        return
    if not data["items"]:
        click.echo("Nothing is waiting.")
        return
    rows = [
        [i["id"], i["version"], i["reason"], f"{i['score']:.2f}", i["answer"], i["detail"]]
        for i in data["items"]
    ]
    output.table(rows, ["ID", "VERSION", "REASON", "SCORE", "ANSWER", "WHY"])
    click.echo(f"Label them at {url}/models/{name}/review, or: aid review {name} --label ID LABEL")
