"""Thin typed constructs, one concern each: props dataclass in, resources out as attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: What a construct tells the runtime: `graphtap.deployment.Deployment` field -> value. The
#: stack merges every construct's facts into the app settings and the outputs, so a new fact
#: is one line in the construct that knows it (and one field in `Deployment`).
DeploymentFacts = Mapping[str, Any]


@dataclass(frozen=True)
class Placement:
    """Where a construct's resources live: every construct takes one."""

    resource_group_name: str
    location: str
    tags: Mapping[str, str]
