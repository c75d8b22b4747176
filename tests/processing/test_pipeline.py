"""The pipeline turns each item into exactly one outcome, and bad input into a named dead letter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphtap.inspection import Inspector
from graphtap.notifications.authenticity import TokenPolicy
from graphtap.notifications.crypto import encrypt_content
from graphtap.notifications.keyring import KeyRing
from graphtap.notifications.model import DEFAULT_MAX_EVENT_BYTES
from graphtap.processing.deadletters import ClientStateMask
from graphtap.processing.pipeline import EventResult, Pipeline
from graphtap.processing.sources import SourceEvent
from graphtap.processing.verdicts import DELETED, INSPECTED, NOT_INCLUDED
from graphtap.simulation.values import luhn_complete
from tests.conftest import GraphVector

from .conftest import CLIENT_STATE, HASH_KEY, Scenario, mutate

CARD = "4111 1111 1111 1111"
#: Where Graph's own test vector (a channel reply) lives, as its decrypted content says.
GRAPH_VECTOR_RESOURCE = (
    "teams('79852646-8963-4d32-95f1-e0c5237d37fa')/channels('19:etTE40ziboDEfQ1v0B96_nCVjGUsZ77"
    "LQa5KRb0cukQ1@thread.tacv2')/messages('1625067617497')/replies('1625126194597')"
)


def _reasons(result: Any) -> list[str]:
    return [str(d.reason) for d in result.dead_letters]


def test_a_created_message_yields_one_masked_verdict(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    message = scenario.tenant.post(sensitive=False)
    message.html = f"<p>Here is the corporate visa card number {CARD} exp 12/29</p>"
    result = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.change(message, "created")))
    )
    assert result.dead_letters == []
    [verdict] = result.verdicts
    assert verdict.content == INSPECTED
    assert verdict.message_id == message.id
    assert verdict.version == message.etag
    conversation = message.conversation
    expected = conversation.chat_id or f"{conversation.team_id}/{conversation.channel_id}"
    assert verdict.conversation_id == expected
    assert verdict.sender_id == message.sender.id
    assert verdict.certificate_id == "cert-a"
    [finding] = [f for f in verdict.findings if f["type"] == "credit_card_number"]
    assert finding["count"] == 1
    assert finding["confidence"] >= 65
    record = json.dumps(verdict.to_dict())
    assert "4111" not in record.replace(finding["preview"], "")  # only the masked preview
    assert "1111 1111 1111" not in record
    assert message.html not in record  # no content in the verdict


def test_a_verdict_says_when_its_findings_were_cut_and_counts_them_all(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    cards = sorted({luhn_complete(f"4{n:014d}") for n in range(10**9, 10**9 + 150)})
    message = scenario.tenant.post(sensitive=False)
    message.html = "<p>" + " ".join(f"{c[:4]} {c[4:8]} {c[8:12]} {c[12:]}" for c in cards) + "</p>"
    result = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.change(message, "created")))
    )
    [verdict] = result.verdicts
    assert len(verdict.findings) == 100
    assert verdict.findings_truncated
    assert verdict.finding_total == len(cards) == 150
    record = verdict.to_dict()
    assert (record["findings_truncated"], record["finding_total"]) == (True, 150)


def test_deleted_changes_get_a_verdict_without_content(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    scenario.tenant.post(sensitive=False)
    message = scenario.tenant.delete()
    assert message is not None
    result = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.change(message, "deleted")))
    )
    [verdict] = result.verdicts
    assert verdict.content == DELETED
    assert verdict.findings == ()
    assert verdict.severity == "none"


def test_basic_notifications_get_a_verdict_saying_content_was_not_included(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    item = scenario.emitter.change(scenario.tenant.post(sensitive=True), "created")
    del item["encryptedContent"]
    [verdict] = pipeline.process(scenario.event(scenario.body(item))).verdicts
    assert verdict.content == NOT_INCLUDED


def test_validation_events_are_counted_and_skipped(pipeline: Pipeline, scenario: Scenario) -> None:
    result = pipeline.process(scenario.event(scenario.body(scenario.emitter.validation())))
    assert result.validation_skipped == 1
    assert result.verdicts == []
    assert result.dead_letters == []


@pytest.mark.parametrize(
    "event", ["reauthorizationRequired", "subscriptionRemoved", "missed", "futureEvent"]
)
def test_lifecycle_events_go_to_the_control_plane(
    pipeline: Pipeline, scenario: Scenario, event: str
) -> None:
    subscription = next(iter(scenario.emitter.subscriptions.values()))
    result = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.lifecycle(subscription, event)))
    )
    [queued] = result.lifecycle
    assert queued.subscription_id == subscription.id
    assert queued.event == event
    assert result.verdicts == []


def test_lifecycle_events_must_carry_our_client_state(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    item = scenario.emitter.lifecycle(next(iter(scenario.emitter.subscriptions.values())), "missed")
    item["clientState"] = "forged"
    result = pipeline.process(scenario.event(scenario.body(item)))
    assert _reasons(result) == ["client_state_mismatch"]


def test_previous_client_state_is_still_accepted(pipeline: Pipeline, scenario: Scenario) -> None:
    item = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    item["clientState"] = "previous-state"
    assert len(pipeline.process(scenario.event(scenario.body(item))).verdicts) == 1


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        (lambda i: i.update(clientState="wrong"), "client_state_mismatch", None),
        (lambda i: i.pop("clientState"), "client_state_mismatch", None),
        (
            lambda i: i["encryptedContent"].update(
                encryptionCertificateId="retired-2024", encryptionCertificateThumbprint="AB" * 20
            ),
            "unknown_certificate",
            "retired-2024",
        ),
        (lambda i: i["encryptedContent"].update(dataSignature="AAAA"), "signature_mismatch", None),
        (lambda i: i["encryptedContent"].update(data="%%%"), "malformed_encrypted_content", "data"),
        (
            lambda i: i["encryptedContent"].update(dataKey="!!"),
            "malformed_encrypted_content",
            "dataKey",
        ),
        (lambda i: i["encryptedContent"].pop("data"), "malformed_notification", "data"),
        (lambda i: i.update(changeType=7), "malformed_notification", "changeType"),
        (lambda i: i.update(changeType="renamed"), "malformed_notification", "renamed"),
        (lambda i: i.pop("tenantId"), "malformed_notification", "tenantId"),
        (lambda i: i.pop("subscriptionId"), "malformed_notification", "subscriptionId"),
        (lambda i: i.update(resourceData=[]), "malformed_notification", "resourceData"),
        (lambda i: i.update(clientState="x" * 5000), "malformed_notification", "clientState"),
        (
            lambda i: (
                [i.pop(k) for k in ("resource", "resourceData", "encryptedContent")]
                and i.update(additionalPayloadStorageId="blob-123")
            ),
            "payload_unavailable",
            "blob-123",
        ),
    ],
)
def test_bad_items_become_named_dead_letters(
    pipeline: Pipeline, scenario: Scenario, change: Any, reason: str, named: str | None
) -> None:
    good = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    bad = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    change(bad)
    body = scenario.body(good, bad)
    result = pipeline.process(scenario.event(body, offset=9))
    assert len(result.verdicts) == 1  # the good neighbour is not lost
    [letter] = result.dead_letters
    assert letter.reason == reason
    assert letter.item_indexes == [1]
    assert letter.offset == 9
    # The body is kept whole, its clientStates masked; the accepted value puts them back.
    assert letter.event.size == len(body)
    assert not letter.event.truncated
    assert "s3cret" not in letter.event.body
    mask = ClientStateMask([CLIENT_STATE], HASH_KEY)
    assert mask.restore(letter.event.body, [CLIENT_STATE, "wrong", "x" * 5000]) == body
    if named is not None:
        assert named in letter.message
    assert "s3cret" not in letter.message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed_event"),
        (b"{not json", "malformed_event"),
        (b"\xff\xfe\x00", "malformed_event"),
        (b"[1, 2, 3]", "malformed_event"),
        (b'{"value": []}', "malformed_event"),
        (b'{"value": {"a": 1}}', "malformed_event"),
        (b'{"nothing": true}', "malformed_event"),
        (b'{"value": [{}], "validationTokens": "abc"}', "malformed_event"),
        (b'{"value": [' + b'"x",' * 10 + b'"x"]}', "malformed_notification"),
        (b'{"value": ["' + b"a" * (DEFAULT_MAX_EVENT_BYTES + 10) + b'"]}', "oversized_event"),
    ],
)
def test_malformed_events_never_stop_the_processor(
    pipeline: Pipeline, body: bytes, reason: str
) -> None:
    result = pipeline.process(SourceEvent("3", 77, body))
    assert result.verdicts == []
    assert result.dead_letters
    assert {str(d.reason) for d in result.dead_letters} == {reason}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "value",
                            "validationTokens",
                            "subscriptionId",
                            "changeType",
                            "clientState",
                            "tenantId",
                            "resource",
                            "encryptedContent",
                            "data",
                            "dataKey",
                            "lifecycleEvent",
                        ]
                    ),
                    children,
                    max_size=6,
                )
            ),
            max_leaves=20,
        ).map(lambda doc: json.dumps(doc).encode()),
    )
)
def test_arbitrary_input_ends_as_outcomes_never_exceptions(pipeline: Pipeline, body: bytes) -> None:
    result = pipeline.process(SourceEvent("0", 0, body))
    assert (
        len(result.verdicts)
        + len(result.dead_letters)
        + len(result.lifecycle)
        + result.validation_skipped
        >= 1
    )


def test_replayed_events_produce_identical_keys(pipeline: Pipeline, scenario: Scenario) -> None:
    body = scenario.body(scenario.emitter.change(scenario.tenant.post(sensitive=True), "created"))
    first = pipeline.process(scenario.event(body))
    again = pipeline.process(scenario.event(body, offset=5))
    assert [v.key for v in first.verdicts] == [v.key for v in again.verdicts]


def test_an_edit_is_a_new_verdict(pipeline: Pipeline, scenario: Scenario) -> None:
    message = scenario.tenant.post(sensitive=False)
    created = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.change(message, "created")))
    )
    scenario.tenant._live[:] = [message]
    edited = scenario.tenant.edit(sensitive=False)
    assert edited is message
    updated = pipeline.process(
        scenario.event(scenario.body(scenario.emitter.change(message, "updated")))
    )
    assert created.verdicts[0].key != updated.verdicts[0].key


def graph_vector_item(
    graph_vector: GraphVector,
    inspector: Inspector,
    tmp_path: Path,
    resource: str,
    resource_data: dict[str, str],
) -> EventResult:
    """Graph's own encrypted payload under a notification with `resource`, processed."""
    bundle = tmp_path / "custom-id-for-testing.pfx"
    bundle.write_bytes(graph_vector.pkcs12)
    pipeline = Pipeline.build(
        keys=KeyRing.load([bundle], password=graph_vector.password),
        client_states=[CLIENT_STATE],
        inspector=inspector,
    )
    item = {
        "subscriptionId": "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f",
        "changeType": "created",
        "tenantId": "bb0ef4a5-0f50-4f1d-9e39-df1aa1d70e3f",
        "clientState": CLIENT_STATE,
        "resource": resource,
        "resourceData": resource_data,
        "encryptedContent": graph_vector.content,
    }
    return pipeline.process(SourceEvent("0", 0, json.dumps({"value": [item]}).encode()))


def test_graph_vector_through_the_whole_pipeline(
    graph_vector: GraphVector, inspector: Inspector, tmp_path: Path
) -> None:
    [verdict] = graph_vector_item(
        graph_vector,
        inspector,
        tmp_path,
        GRAPH_VECTOR_RESOURCE,
        {"id": "1625126194597", "@odata.type": "#Microsoft.Graph.chatMessage"},
    ).verdicts
    assert verdict.version == graph_vector.expected["etag"]
    assert verdict.content == INSPECTED
    assert verdict.message_id == "1625126194597"
    assert verdict.conversation_id == (
        "79852646-8963-4d32-95f1-e0c5237d37fa/19:etTE40ziboDEfQ1v0B96_nCVjGUsZ77LQa5KRb0cukQ1"
        "@thread.tacv2"
    )


@pytest.mark.parametrize(
    ("resource", "resource_id"),
    [
        # another reply in the same thread: Graph's signature still verifies
        (GRAPH_VECTOR_RESOURCE.replace("1625126194597", "1625126194598"), "1625126194597"),
        # the same reply filed under another channel, another team, a chat, a mailbox
        (GRAPH_VECTOR_RESOURCE.replace("etTE40", "XXXX40"), "1625126194597"),
        (GRAPH_VECTOR_RESOURCE.replace("79852646", "00000000"), "1625126194597"),
        ("chats('19:abc@unq.gbl.spaces')/messages('1625126194597')", "1625126194597"),
        ("Users/u1/Messages/1625126194597", "1625126194597"),
        # the reply filed under its parent's thread as a top-level message
        (GRAPH_VECTOR_RESOURCE.split("/replies")[0], "1625126194597"),
        # the right resource, but resourceData names another message
        (GRAPH_VECTOR_RESOURCE, "1625126194598"),
    ],
)
def test_graphs_content_under_another_notification_is_a_resource_mismatch(
    graph_vector: GraphVector, inspector: Inspector, tmp_path: Path, resource: str, resource_id: str
) -> None:
    result = graph_vector_item(graph_vector, inspector, tmp_path, resource, {"id": resource_id})
    assert result.verdicts == []
    [letter] = result.dead_letters
    assert letter.reason == "resource_mismatch"
    assert "Hello World" not in letter.message  # ids only, never content


def test_a_swapped_payload_never_yields_a_verdict(pipeline: Pipeline, scenario: Scenario) -> None:
    """Message B's genuine encrypted content under message A's notification."""
    first = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    second = scenario.emitter.change(scenario.tenant.post(sensitive=True), "created")
    first["encryptedContent"], second["encryptedContent"] = (
        second["encryptedContent"],
        first["encryptedContent"],
    )
    result = pipeline.process(scenario.event(scenario.body(first, second)))
    assert result.verdicts == []
    [letter] = result.dead_letters
    assert letter.reason == "resource_mismatch"
    assert letter.item_indexes == [0, 1]


class TestValidationTokens:
    def test_tokens_without_a_verifier_are_dead_lettered(
        self, pipeline: Pipeline, scenario: Scenario
    ) -> None:
        body = mutate(
            scenario.body(
                scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
            ),
            lambda doc: doc.update(validationTokens=["eyJ.a.b"]),
        )
        result = pipeline.process(scenario.event(body))
        assert _reasons(result) == ["invalid_validation_token"]
        assert result.verdicts == []

    def test_a_failing_token_sends_the_whole_event_to_dead_letters(
        self, keys_dir: Path, inspector: Inspector, scenario: Scenario, tmp_path: Path
    ) -> None:
        unrelated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(unrelated.public_key()))
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
        pipeline = Pipeline.build(
            keys=KeyRing.load([keys_dir]),
            client_states=[CLIENT_STATE],
            inspector=inspector,
            token_policy=TokenPolicy(app_ids=("app",), jwks=str(jwks)),
        )
        items = [
            scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
            for _ in range(3)
        ]
        body = mutate(scenario.body(*items), lambda doc: doc.update(validationTokens=["eyJ.a.b"]))
        result = pipeline.process(scenario.event(body))
        [letter] = result.dead_letters
        assert letter.reason == "invalid_validation_token"
        assert letter.items is None
        assert letter.item_count == 1
        assert result.verdicts == []


def test_a_resource_of_the_wrong_shape_is_a_dead_letter(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    message = scenario.tenant.post(sensitive=False)
    item = scenario.emitter.change(message, "created")
    resource = message.to_graph()
    resource["body"] = "just a string"
    item["encryptedContent"] = encrypt_content(
        json.dumps(resource).encode(), scenario.emitter.public_key, certificate_id="cert-a"
    )
    result = pipeline.process(scenario.event(scenario.body(item)))
    assert _reasons(result) == ["malformed_resource"]


def test_a_batch_gives_what_its_events_give_one_by_one(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    """Stages run stage by stage over a batch; the outcome per event must not change."""
    bodies = []
    for index in range(12):
        items = [scenario.emitter.change(scenario.tenant.post(sensitive=True), "created")]
        if index % 3 == 0:
            items.append(
                scenario.emitter.lifecycle(
                    next(iter(scenario.emitter.subscriptions.values())), "missed"
                )
            )
        if index % 4 == 1:
            items[0]["clientState"] = "forged"
        bodies.append(scenario.body(*items))
    bodies.insert(5, b"not json")
    events = [scenario.event(body, offset=i) for i, body in enumerate(bodies)]

    def summary(result: Any) -> tuple[Any, ...]:
        return (
            result.offset,
            result.notifications,
            [(v.key, v.findings) for v in result.verdicts],
            [(d.reason, d.items) for d in result.dead_letters],
            [e.key for e in result.lifecycle],
        )

    one_by_one = [summary(pipeline.process(event)) for event in events]
    assert [summary(r) for r in pipeline.process_batch(events)] == one_by_one
    assert any(s[3] for s in one_by_one)
    assert any(s[4] for s in one_by_one)


def test_an_unexpected_failure_is_a_dead_letter_not_a_stalled_partition(
    keys_dir: Path, scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky:
        """An inspector that breaks on one message, as a library bug would."""

        def __init__(self) -> None:
            self.calls = 0

        def inspect_message(self, message: Any) -> Any:
            self.calls += 1
            if self.calls == 2:
                raise RecursionError("deep inside the parser: <p>4111 1111 1111 1111</p>")
            return None

    pipeline = Pipeline.build(
        keys=KeyRing.load([keys_dir]),
        client_states=[CLIENT_STATE],
        inspector=Flaky(),  # type: ignore[arg-type]
        dead_letter_key=HASH_KEY,
    )
    items = [
        scenario.emitter.change(scenario.tenant.post(sensitive=False), "created") for _ in range(3)
    ]
    [result] = pipeline.process_batch([scenario.event(scenario.body(*items))])
    assert len(result.verdicts) == 2
    [letter] = result.dead_letters
    assert letter.reason == "processing_error"
    assert letter.item_indexes == [1]
    assert "RecursionError" in letter.message
    assert "4111" not in letter.message
    assert "4111" not in caplog.text  # the exception's text, which may quote content, is not logged
