"""Reconcile: the pure plan, and its execution against the fake Graph through msgraph-sdk."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from graphtap.subscriptions.control_plane import ControlPlane
from graphtap.subscriptions.graph import (
    GraphError,
    GraphSubscription,
    GraphSubscriptions,
    NewSubscription,
    build_client,
)
from graphtap.subscriptions.reconcile import Kind, Target, plan
from tests.subscriptions.conftest import (
    NOTIFICATION_URL,
    START,
    SUBSCRIPTIONS,
    Bench,
    FakeCredential,
    deployment,
    desired_state,
)

TARGET = Target(NOTIFICATION_URL, "client-state", "MIIB", "cert-v2")


def existing(
    resource: str, *, hours_left: float, url: str = NOTIFICATION_URL, **kw: object
) -> GraphSubscription:
    fields: dict[str, object] = {
        "include_resource_data": True,
        "encryption_certificate_id": "cert-v2",
        **kw,
    }
    return GraphSubscription(
        id=f"id-{resource}-{url[-3:]}",
        resource=resource,
        change_type="created,updated,deleted",
        notification_url=url,
        expiration=START + dt.timedelta(hours=hours_left),
        **fields,  # type: ignore[arg-type]
    )


def kinds(actions: list) -> dict[str, Kind]:  # type: ignore[type-arg]
    return {a.resource: a.kind for a in actions}


class TestPlan:
    def test_missing_subscriptions_are_created(self) -> None:
        actions = plan(desired_state(), [], TARGET, START)
        assert set(kinds(actions).values()) == {Kind.CREATE}
        assert len(actions) == 4

    def test_fresh_ones_are_kept_and_old_ones_renewed(self) -> None:
        state = desired_state(
            subscription=[
                {"resource": "/teams/getAllMessages"},
                {"resource": "/chats/getAllMessages"},
            ]
        )
        actual = [
            existing("/teams/getAllMessages", hours_left=60),
            existing("/chats/getAllMessages", hours_left=30),  # past half of 72 h
        ]
        assert kinds(plan(state, actual, TARGET, START)) == {
            "/teams/getAllMessages": Kind.KEEP,
            "/chats/getAllMessages": Kind.RENEW,
        }

    def test_an_old_certificate_means_rekey(self) -> None:
        state = desired_state(subscription=[{"resource": "/chats/getAllMessages"}])
        actual = [
            existing("/chats/getAllMessages", hours_left=70, encryption_certificate_id="cert-v1")
        ]
        assert kinds(plan(state, actual, TARGET, START)) == {"/chats/getAllMessages": Kind.REKEY}

    def test_only_owned_subscriptions_are_deleted(self) -> None:
        state = desired_state(subscription=[{"resource": "/chats/getAllMessages"}])
        foreign = existing("/teams/getAllMessages", hours_left=70, url="https://other.example/hook")
        unwanted = existing("/teams/getAllMessages", hours_left=70)
        actions = plan(
            state,
            [foreign, unwanted, existing("/chats/getAllMessages", hours_left=70)],
            TARGET,
            START,
        )
        deleted = [a.actual for a in actions if a.kind is Kind.DELETE]
        assert deleted == [unwanted]
        assert all(a.actual is not foreign for a in actions)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


class TestApply:
    def test_a_second_run_changes_nothing(self, bench: Bench) -> None:
        async def twice() -> tuple[list, list]:  # type: ignore[type-arg]
            plane = bench.control_plane()
            first = await plane.reconcile()
            writes = len([r for r in bench.graph.requests if r[0] != "GET"])
            second = await plane.reconcile()
            assert len([r for r in bench.graph.requests if r[0] != "GET"]) == writes
            return first, second

        first, second = run(twice())
        assert {o.action for o in first} == {"created"}
        assert {o.action for o in second} == {"unchanged"}
        assert len(bench.graph.active()) == 4

    def test_created_subscriptions_carry_what_graph_needs(self, bench: Bench) -> None:
        run(bench.control_plane().reconcile())
        by_resource = {s.resource: s for s in bench.graph.active()}
        teams = by_resource["/teams/getAllMessages"]
        assert teams.notification_url == NOTIFICATION_URL
        assert teams.lifecycle_notification_url == NOTIFICATION_URL
        assert teams.include_resource_data
        version = bench.vault.certificates["graph-notifications"][-1]
        assert teams.certificate_id == f"graph-notifications-{version.version}"
        assert teams.certificate == version.certificate
        assert teams.client_state
        assert len(teams.client_state) <= 128
        mail = by_resource["/users/alice@contoso.com/messages"]
        assert not mail.include_resource_data

    def test_mail_subscriptions_rich_ones_too_are_created_asking_for_immutable_ids(
        self, bench: Bench
    ) -> None:
        """Graph then names messages by ids that survive a move; Teams has no such ids."""
        rich_mail = "/users/carol@contoso.com/messages?$select=subject,body"
        desired = desired_state(
            subscription=[*SUBSCRIPTIONS, {"resource": rich_mail, "lifetime_minutes": 1440}]
        )
        run(bench.control_plane(desired).reconcile())
        asked = {s.resource: s.immutable_ids for s in bench.graph.active()}
        assert asked == {
            "/teams/getAllMessages": False,
            "/chats/getAllMessages": False,
            "/users/alice@contoso.com/messages": True,
            "/users/bob@contoso.com/messages": True,
            rich_mail: True,
        }

    def test_every_page_is_listed(self, bench: Bench) -> None:
        bench.graph.page_size = 1
        run(bench.control_plane().reconcile())
        outcomes = run(bench.control_plane().reconcile())
        assert [o.action for o in outcomes] == ["unchanged"] * 4

    def test_foreign_subscriptions_survive(self, bench: Bench) -> None:
        async def scenario() -> None:
            client_plane = bench.control_plane()
            await client_plane.reconcile()
            other = bench.control_plane(
                desired_state(subscription=[{"resource": "/chats/getAllMessages"}])
            )
            other.notification_url = (
                "EventHub:https://other.servicebus.windows.net/eventhubname/x?tenantId=c.com"
            )
            await other.reconcile()

        run(scenario())
        # The second deployment wanted /chats but Graph allows one per app: 409, nothing deleted.
        assert len(bench.graph.active()) == 4

    def test_undeclared_subscriptions_of_this_deployment_are_deleted(self, bench: Bench) -> None:
        async def scenario() -> list:  # type: ignore[type-arg]
            await bench.control_plane().reconcile()
            fewer = desired_state(lists={"mailboxes": ["alice@contoso.com"]})
            return await bench.control_plane(fewer).reconcile()

        outcomes = run(scenario())
        assert [o.resource for o in outcomes if o.action == "deleted"] == [
            "/users/bob@contoso.com/messages"
        ]
        assert len(bench.graph.active()) == 3

    def test_a_renewal_that_meets_404_recreates(self, bench: Bench) -> None:
        async def scenario() -> list:  # type: ignore[type-arg]
            plane = bench.control_plane()
            await plane.reconcile()
            gone = next(s for s in bench.graph.active() if s.resource == "/chats/getAllMessages")
            del bench.graph.subscriptions[gone.id]  # vanished without a lifecycle event
            bench.clock.advance(40 * 3600)
            return await plane.renew_due()

        outcomes = run(scenario())
        actions = {o.resource: o.action for o in outcomes}
        assert actions["/chats/getAllMessages"] == "recreated (404 on renew)"
        assert actions["/teams/getAllMessages"] == "renewed"
        assert {s.resource for s in bench.graph.active()} >= {"/chats/getAllMessages"}


@pytest.mark.parametrize(
    ("breakage", "status", "hint"),
    [
        ({"permissions": {"Chat.ReadWrite.All"}}, 403, "admin consent"),
        ({"protected_api_approved": False}, 403, "aka.ms/teamsgraph/requestaccess"),
        ({"publishing_ok": False}, 400, "Data Sender"),
        ({"teams_quota": 1}, 403, "quota"),
        ({"payment_required": True}, 402, "licence"),
    ],
)
def test_the_errors_users_hit_say_what_to_do(
    bench: Bench, breakage: dict[str, object], status: int, hint: str
) -> None:
    for name, value in breakage.items():
        setattr(bench.graph, name, value)
    outcomes = run(bench.control_plane().reconcile())
    failed = [o for o in outcomes if o.error is not None]
    assert failed
    assert all(o.error is not None and o.error.status == status for o in failed)
    assert all(o.error is not None and hint in o.error.hint for o in failed)


class TestLargePayloads:
    """With a payload store, rich subscriptions name it in `blobStoreUrl` (Graph's field the
    SDK's model lacks); basic ones cannot carry it, and without one nothing is sent."""

    def plane(self, bench: Bench, secret: str | None) -> ControlPlane:
        return ControlPlane.from_deployment(
            dataclasses.replace(
                deployment(),
                payload_secret=secret,
                payload_vault_uri="https://kvp-gtap-dev-weu.vault.azure.net/" if secret else None,
            ),
            FakeCredential(),
            desired=desired_state(),
            clock=bench.clock,
            graph_transport=bench.graph,
            keyvault_options={"transport": bench.vault.transport()},
        )

    def test_rich_subscriptions_point_graph_at_the_payload_secret(self, bench: Bench) -> None:
        outcomes = run(self.plane(bench, "graph-payload-storage").reconcile())
        assert {o.action for o in outcomes} == {"created"}
        urls = {s.resource: s.blob_store_url for s in bench.graph.active()}
        expected = (  # the payload vault Graph can reach, not the main one
            "https://kvp-gtap-dev-weu.vault.azure.net/secrets/graph-payload-storage"
            "?tenantId=contoso.onmicrosoft.com"
        )
        assert urls == {
            "/teams/getAllMessages": expected,
            "/chats/getAllMessages": expected,
            "/users/alice@contoso.com/messages": None,
            "/users/bob@contoso.com/messages": None,
        }

    def test_without_a_payload_store_no_subscription_names_one(self, bench: Bench) -> None:
        run(self.plane(bench, None).reconcile())
        assert {s.blob_store_url for s in bench.graph.active()} == {None}

    def test_graph_refuses_one_on_a_basic_subscription(self, bench: Bench) -> None:
        request = NewSubscription(
            resource="/users/alice@contoso.com/messages",
            change_type="created",
            notification_url=NOTIFICATION_URL,
            lifecycle_notification_url=None,
            expiration=START + dt.timedelta(hours=2),
            client_state="state",
            include_resource_data=False,
            blob_store_url="https://kv.vault.azure.net/secrets/s?tenantId=contoso.com",
        )
        client = GraphSubscriptions(build_client(FakeCredential(), transport=bench.graph))
        with pytest.raises(GraphError, match="includeResourceData"):
            run(client.create(request))


def test_a_tenant_with_more_pages_of_subscriptions_than_graph_lists_in_20_s_is_listed(
    bench: Bench,
) -> None:
    """Graph allows 25 list requests per 20 s: 42 pages (a tenant with thousands of mail
    subscriptions, at 100 a page) are paced, not sent at once and refused from page 26 on
    (then retried from page one, for ever)."""
    boxes = [f"user{n}@contoso.com" for n in range(40)]
    desired = desired_state(lists={"mailboxes": boxes})
    bench.graph.page_size = 1

    async def scenario() -> int:
        plane = bench.control_plane(desired)
        await plane.reconcile()  # creates them: the first list is short
        outcomes = await plane.reconcile()
        return len(outcomes)

    assert asyncio.run(scenario()) == len(boxes) + 2
    assert bench.graph.rejected_for_rate == 0
