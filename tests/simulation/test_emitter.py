"""The simulator writes what Graph writes, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphtap.notifications.crypto import decrypt_content
from graphtap.notifications.keyring import KeyRing
from graphtap.notifications.model import ChangeNotification, parse_collection
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.certificates import create_certificate, load_certificate


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sim-keys")
    create_certificate(directory, certificate_id="sim")
    return directory


def _events(keys: Path, seed: int, **options: Any) -> list[dict[str, Any]]:
    stream = simulate(
        SimulationSettings(count=60, seed=seed, **options),
        certificate=load_certificate(keys / "sim.cert.pem"),
        certificate_id="sim",
        client_state="cs",
    )
    return [json.loads(event.body) for event in stream]


def _without_wrapped_keys(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        for item in event["value"]:
            item.get("encryptedContent", {}).pop("dataKey", None)
    return events


def test_same_seed_same_stream_except_oaep_padding(keys: Path) -> None:
    first, second = _events(keys, 1), _events(keys, 1)
    assert _without_wrapped_keys(first) == _without_wrapped_keys(second)
    assert _without_wrapped_keys(_events(keys, 2)) != _without_wrapped_keys(first)


def test_items_are_shaped_and_encrypted_as_graph_does(keys: Path) -> None:
    ring = KeyRing.load([keys])
    stream = list(
        simulate(
            SimulationSettings(count=80, seed=4, lifecycle_share=0.2, sensitive_share=0.5),
            certificate=load_certificate(keys / "sim.cert.pem"),
            certificate_id="sim",
            client_state="cs",
        )
    )
    kinds = {"validation": 0, "lifecycle": 0, "created": 0, "updated": 0, "deleted": 0}
    planted = 0
    for event in stream:
        collection = parse_collection(event.body)
        for item in collection.items:
            assert isinstance(item, ChangeNotification)
            if item.is_validation:
                kinds["validation"] += 1
                assert item.change_type.startswith(
                    "Validation: Testing client application reachability"
                )
            elif item.is_lifecycle:
                kinds["lifecycle"] += 1
            else:
                kinds[item.change_type] += 1
                assert item.client_state == "cs"
                if item.encrypted_content is not None:
                    content = item.encrypted_content
                    assert content.certificate_thumbprint == ring.entries()[0].thumbprint
                    resource = decrypt_content(content, ring.key_for(content).private_key)
                    assert resource["id"] == (item.resource_data or {})["id"]
                    assert resource["body"]["contentType"] == "html"
        planted += len(event.planted)
    assert kinds["validation"] == 2
    assert kinds["lifecycle"] > 0
    assert kinds["created"] > kinds["updated"] > 0
    assert sum(kinds[k] for k in ("created", "updated", "deleted")) == 80
    assert planted > 0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="sensitive_share"):
        SimulationSettings(count=1, sensitive_share=1.5)
    with pytest.raises(ValueError, match="max_batch"):
        SimulationSettings(count=1, max_batch=0)
