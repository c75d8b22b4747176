"""Thin typed constructs, one concern each: props dataclass in, resources out as attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Where a construct's resources live: every construct takes one."""

    resource_group_name: str
    location: str
    tags: Mapping[str, str]
