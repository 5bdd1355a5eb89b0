"""The states of a deployment and of a build, and the sets that group them (defined here only)."""

from __future__ import annotations

from enum import StrEnum


class DeploymentStatus(StrEnum):
    """A deployed version's server. `NOT_DEPLOYED` is never stored: it is what a version without a
    deployment row shows."""

    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    NOT_DEPLOYED = "not deployed"


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """One step of a build (BUILD_STEPS)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DriftRunStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"


class BuildStep(StrEnum):
    """The steps every build goes through, in this order."""

    QUEUED = "queued"
    ENVIRONMENT = "environment"
    START = "start"
    SMOKE_TEST = "smoke test"


BUILD_STEPS = tuple(BuildStep)

# Deployments that should have a server: the hub adopts or restarts them when it starts.
LIVE = frozenset({DeploymentStatus.STARTING, DeploymentStatus.READY, DeploymentStatus.UNHEALTHY})
# Deployments whose server was up once and that the watcher keeps up.
SERVING = frozenset({DeploymentStatus.READY, DeploymentStatus.UNHEALTHY})
# Builds still on the queue or running; one per version at a time.
IN_FLIGHT = frozenset({BuildStatus.QUEUED, BuildStatus.RUNNING, BuildStatus.CANCELLING})
# Builds that ended.
FINAL = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED})
