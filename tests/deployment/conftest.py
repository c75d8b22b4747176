"""The deployment rehearsal's fixtures: the synthesized stacks, shared with the stack tests."""

from __future__ import annotations

from tests.stacks.conftest import prod, synthesized  # noqa: F401  (session-wide synth)
