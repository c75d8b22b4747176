"""Property-based fuzzing of the pipeline with random and mutated event bodies.

Every item of every event ends as exactly one outcome (a verdict, a skip, a lifecycle event
or a dead letter), no exception escapes, and a payload whose ciphertext, signature or key
was altered never reaches the AES decryptor. Bounded to a few seconds.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from graphtap.notifications import crypto
from graphtap.processing.pipeline import EventResult, Pipeline
from graphtap.processing.sources import SourceEvent
from graphtap.simulation.emitter import collection
from graphtap.subscriptions.certificates import CertificateFiles

from .conftest import new_scenario

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FIELDS = [
    "value",
    "validationTokens",
    "subscriptionId",
    "changeType",
    "clientState",
    "tenantId",
    "resource",
    "resourceData",
    "encryptedContent",
    "data",
    "dataKey",
    "dataSignature",
    "encryptionCertificateId",
    "lifecycleEvent",
    "additionalPayloadStorageId",
    "id",
    "chatId",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def items(cert_a: CertificateFiles) -> list[dict[str, Any]]:
    """Genuine items as Graph shapes them: created, updated, deleted, lifecycle, validation."""
    scenario = new_scenario(cert_a, seed=11)
    tenant, emitter = scenario.tenant, scenario.emitter
    made = [emitter.change(tenant.post(sensitive=n % 2 == 0), "created") for n in range(6)]
    made.append(emitter.change(tenant.post(sensitive=False), "deleted"))
    made.append(emitter.lifecycle(next(iter(emitter.subscriptions.values())), "missed"))
    made.append(emitter.validation())
    return made


def check_accounting(result: EventResult) -> None:
    """Each item has exactly one outcome; a whole-event letter stands alone."""
    whole = [d for d in result.dead_letters if d.items is None]
    if whole:
        assert len(result.dead_letters) == 1
        assert result.verdicts == []
        assert result.lifecycle == []
        assert result.validation_skipped == 0
        return
    outcomes = (
        len(result.verdicts)
        + len(result.lifecycle)
        + result.validation_skipped
        + sum(d.item_count for d in result.dead_letters)
    )
    assert outcomes == result.notifications
    assert len({d.key for d in result.dead_letters}) == len(result.dead_letters)
    for letter in result.dead_letters:
        assert letter.item_indexes is not None
        assert all(0 <= i < result.notifications for i in letter.item_indexes)


def mutate(document: Any, rng: random.Random, value: Any) -> Any:
    """Replace, drop or add one node somewhere in a JSON document."""
    if isinstance(document, dict) and document and rng.random() < 0.7:
        key = rng.choice(sorted(document))
        choice = rng.random()
        if choice < 0.3:
            del document[key]
        elif choice < 0.6:
            document[key] = value
        else:
            document[key] = mutate(document[key], rng, value)
        return document
    if isinstance(document, list) and document and rng.random() < 0.7:
        index = rng.randrange(len(document))
        choice = rng.random()
        if choice < 0.2:
            del document[index]
        elif choice < 0.4:
            document.insert(index, value)
        else:
            document[index] = mutate(document[index], rng, value)
        return document
    return value


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=400),
        JSON_VALUES.map(lambda doc: json.dumps(doc).encode()),
        st.lists(JSON_VALUES, max_size=6).map(lambda value: json.dumps({"value": value}).encode()),
    )
)
def test_random_bodies_end_as_outcomes(pipeline: Pipeline, body: bytes) -> None:
    [result] = pipeline.process_batch([SourceEvent("0", 0, body)])
    assert result.verdicts == []  # nothing random decrypts
    check_accounting(result)


@FUZZ
@given(
    picks=st.lists(st.integers(0, 8), min_size=1, max_size=5),
    mutations=st.lists(st.tuples(st.integers(0, 2**32), JSON_VALUES), max_size=4),
    cut=st.none() | st.integers(0, 4000),
)
def test_mutated_genuine_bodies_end_as_outcomes(
    pipeline: Pipeline,
    items: list[dict[str, Any]],
    picks: list[int],
    mutations: list[tuple[int, Any]],
    cut: int | None,
) -> None:
    document: Any = {"value": [copy.deepcopy(items[i]) for i in picks]}
    for seed, value in mutations:
        document = mutate(document, random.Random(seed), value)
    body = json.dumps(document).encode()
    if cut is not None:
        body = body[:cut]
    results = pipeline.process_batch([SourceEvent("0", 0, body), SourceEvent("0", 1, body)])
    for result in results:
        check_accounting(result)
    assert [v.key for v in results[0].verdicts] == [v.key for v in results[1].verdicts]


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ciphertext that reaches the AES decryptor."""
    seen: list[bytes] = []
    real = crypto.Cipher  # type: ignore[attr-defined]  # the module's own import, spied on

    class Spy:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._cipher = real(*args, **kwargs)

        def decryptor(self) -> Any:
            inner = self._cipher.decryptor()

            class Recording:
                def update(self, data: bytes) -> bytes:
                    seen.append(bytes(data))
                    return bytes(inner.update(data))

                def finalize(self) -> bytes:
                    return bytes(inner.finalize())

            return Recording()

    monkeypatch.setattr(crypto, "Cipher", Spy)
    return seen


@FUZZ
@given(
    which=st.integers(0, 5),
    field=st.sampled_from(["data", "dataSignature", "dataKey"]),
    position=st.integers(0, 10_000),
    replacement=st.sampled_from("AQgw+/09Zz"),
)
def test_a_tampered_payload_is_never_decrypted(
    pipeline: Pipeline,
    items: list[dict[str, Any]],
    decrypted: list[bytes],
    which: int,
    field: str,
    position: int,
    replacement: str,
) -> None:
    item = copy.deepcopy(items[which])
    content = item["encryptedContent"]
    original = content[field]
    index = position % len(original.rstrip("="))
    tampered = original[:index] + replacement + original[index + 1 :]
    assume(base64.b64decode(tampered) != base64.b64decode(original))  # really altered
    content[field] = tampered
    decrypted.clear()
    [result] = pipeline.process_batch([SourceEvent("0", 0, collection([item]))])
    assert result.verdicts == []
    [letter] = result.dead_letters
    assert letter.reason in {"signature_mismatch", "decryption_failed"}
    assert base64.b64decode(content["data"]) not in decrypted
    if field != "data":
        assert decrypted == []  # nothing at all was decrypted


def test_the_spy_sees_genuine_decryptions(
    pipeline: Pipeline, items: list[dict[str, Any]], decrypted: list[bytes]
) -> None:
    """The tamper property above would pass vacuously if the spy saw nothing."""
    [result] = pipeline.process_batch([SourceEvent("0", 0, collection([items[0]]))])
    assert len(result.verdicts) == 1
    assert decrypted == [base64.b64decode(items[0]["encryptedContent"]["data"])]
