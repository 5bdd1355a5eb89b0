"""The registry's schema steps, registered with the hub's one migration runner (database.migrations)."""

from __future__ import annotations

from database.migrations import add_column, create_tables, register
from registry.aliaschanges import AliasChange
from registry.models import TABLES, AliasRow, BuildRow, DeploymentRow, FileRow
from registry.tokens import TokenRow

register(
    "registry",
    [
        (1, "create tables", create_tables(TABLES)),
        (2, "deployments.container_id", add_column("deployments", DeploymentRow.container_id)),
        (3, "builds.alias", add_column("builds", BuildRow.alias)),
        (4, "builds.retire", add_column("builds", BuildRow.retire)),
        (5, "version_files", create_tables([FileRow])),
        (6, "tokens", create_tables([TokenRow])),
        (7, "aliases.weights", add_column("aliases", AliasRow.weights)),
        (8, "aliases.previous", add_column("aliases", AliasRow.previous)),
        (9, "alias_changes", create_tables([AliasChange])),
    ],
)
