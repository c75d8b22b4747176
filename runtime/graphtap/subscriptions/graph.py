"""A thin async face over msgraph-sdk's `/subscriptions` and export APIs.

The real SDK does the HTTP; this module chooses the endpoint (national clouds), puts
graphtap's own retry in charge (the SDK's retry handler would sleep on the wall clock and
retry behind the write pacer's back) and turns Graph's errors into `GraphError`s that say
what the operator must do.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware import (
    HeadersInspectionHandler,
    ParametersNameDecodingHandler,
    RedirectHandler,
    UrlReplaceHandler,
    UserAgentHandler,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from graphtap.deployment import DEFAULT_GRAPH_ENDPOINT
from graphtap.notifications.outlook import IMMUTABLE_IDS, mail_subscription
from graphtap.subscriptions.throttle import RETRYABLE_STATUS, RetryableError

API_VERSION = "v1.0"


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """A subscription as Graph returns it (Graph never returns clientState)."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    expiration: dt.datetime
    lifecycle_notification_url: str | None = None
    include_resource_data: bool = False
    encryption_certificate_id: str | None = None
    application_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.resource.lower(), ",".join(sorted(self.change_type.split(","))))


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """What a POST /subscriptions carries."""

    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    expiration: dt.datetime
    client_state: str
    include_resource_data: bool
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    #: Where Graph writes a rich payload over 1 MB: a Key Vault secret's URL holding the
    #: payload account's connection string (`?tenantId=<domain>`).
    blob_store_url: str | None = None

    def __repr__(self) -> str:  # clientState is a secret: keep it out of logs and tracebacks
        return f"NewSubscription(resource={self.resource!r}, change_type={self.change_type!r})"


class GraphError(Exception):
    """A Graph call that failed for a reason retrying will not fix; `hint` says what to do."""

    def __init__(self, status: int | None, code: str | None, message: str, operation: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        self.hint = explain(status, message)
        super().__init__(f"{operation}: {status} {code or ''} {message}".strip())


def explain(status: int | None, message: str) -> str:
    """What an operator does about the errors users actually hit."""
    text = message.lower()
    if "publishing validation failed" in text or "invalid event hub notification url" in text:
        return (
            "Graph could not publish to the event hub: make sure the 'Microsoft Graph Change "
            "Tracking' service principal (appId 0bf30f3b-4a52-48df-9a82-234910c4a086) exists in "
            "the tenant and holds 'Azure Event Hubs Data Sender' on the hub or namespace, that "
            "the namespace allows public network access, and that tenantId in the URL is the "
            "tenant's domain"
        )
    if "protected api" in text:
        return (
            "the app needs Microsoft's approval for protected Teams APIs in application "
            "context: request it at https://aka.ms/teamsgraph/requestaccess"
        )
    if status == 403 and ("quota" in text or "limit" in text or "exceed" in text):
        return (
            "a subscription quota is exhausted (10,000 Teams subscriptions per organization, "
            "1 per app per chat or channel, 1,000 per mailbox): delete unused subscriptions or "
            "declare fewer"
        )
    if status == 403 or "missing role permissions" in text or "insufficient privileges" in text:
        return (
            "the app lacks the application permission or admin consent: grant the read "
            "permission the resource needs (ChannelMessage.Read.All, Chat.Read.All, Mail.Read) "
            "and have an admin consent"
        )
    if status == 402:
        return "the tenant needs a licence or billing for this API (metered Teams APIs)"
    if status == 401:
        return "the credential's token was rejected: check the login, tenant and authority"
    if status == 409:
        return "a subscription for this resource and change type already exists"
    return "see Graph's message"


def graph_base_url(endpoint: str) -> str:
    return f"{endpoint.rstrip('/')}/{API_VERSION}"


def build_client(
    credential: AsyncTokenCredential,
    *,
    endpoint: str = DEFAULT_GRAPH_ENDPOINT,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 30.0,
) -> GraphServiceClient:
    """msgraph-sdk's client for `endpoint` (a national cloud's Graph host works too).

    `transport` replaces the network: tests put the fake Graph there.
    """
    host = urlsplit(endpoint).hostname or ""
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{endpoint.rstrip('/')}/.default"], allowed_hosts=[host]
    )
    http = httpx.AsyncClient(
        base_url=graph_base_url(endpoint),
        timeout=timeout,
        transport=transport or httpx.AsyncHTTPTransport(retries=0),
    )
    # The SDK's defaults without its RetryHandler: WriteThrottle retries on the right clock.
    middleware = [
        RedirectHandler(),
        ParametersNameDecodingHandler(),
        UrlReplaceHandler(),
        UserAgentHandler(),
        HeadersInspectionHandler(),
    ]
    http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = graph_base_url(endpoint)  # httpx would add a trailing slash
    return GraphServiceClient(request_adapter=adapter)


class GraphSubscriptions:
    """List, create, renew, re-key, reauthorize and delete subscriptions through the SDK."""

    def __init__(self, client: GraphServiceClient) -> None:
        self._client = client

    async def list_all(
        self, pace: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] | None = None
    ) -> list[GraphSubscription]:
        """Every subscription this app holds in the tenant, following @odata.nextLink.

        `pace` runs each page's request (a throttle's `run`): pages are paced and retried one
        by one, so a 429 on a late page does not send the earlier ones again."""
        found: list[GraphSubscription] = []
        builder = self._client.subscriptions
        while True:
            read = partial(_subscriptions_page, builder)
            page = await (pace(read) if pace is not None else read())
            if page is None:
                break
            found.extend(_from_sdk(s) for s in page.value or [])
            if not page.odata_next_link:
                break
            builder = self._client.subscriptions.with_url(page.odata_next_link)
        return found

    async def create(self, request: NewSubscription) -> GraphSubscription:
        body = Subscription(
            resource=request.resource,
            change_type=request.change_type,
            notification_url=request.notification_url,
            lifecycle_notification_url=request.lifecycle_notification_url,
            expiration_date_time=request.expiration,
            client_state=request.client_state,
            include_resource_data=request.include_resource_data,
            encryption_certificate=request.encryption_certificate,
            encryption_certificate_id=request.encryption_certificate_id,
        )
        if request.blob_store_url is not None:
            # Not in Graph's metadata, so not in the SDK's model: sent as an additional field.
            body.additional_data["blobStoreUrl"] = request.blob_store_url
        config: RequestConfiguration[Any] = RequestConfiguration()
        if mail_subscription(request.resource):
            config.headers.add("Prefer", IMMUTABLE_IDS)  # its notifications name immutable ids
        created = await _call(
            f"create {request.resource}", self._client.subscriptions.post(body, config)
        )
        if created is None:
            raise GraphError(None, None, "Graph returned no subscription", "create")
        return _from_sdk(created)

    async def renew(self, subscription_id: str, expiration: dt.datetime) -> GraphSubscription:
        """PATCH a new expirationDateTime; this also reauthorizes the subscription."""
        return await self._patch(subscription_id, Subscription(expiration_date_time=expiration))

    async def update_certificate(
        self,
        subscription_id: str,
        *,
        certificate: str,
        certificate_id: str,
        expiration: dt.datetime,
    ) -> GraphSubscription:
        """PATCH a new encryption certificate (with a renewal); the caller checks it took."""
        body = Subscription(
            expiration_date_time=expiration,
            encryption_certificate=certificate,
            encryption_certificate_id=certificate_id,
        )
        return await self._patch(subscription_id, body)

    async def _patch(self, subscription_id: str, body: Subscription) -> GraphSubscription:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        updated = await _call(f"renew {subscription_id}", builder.patch(body))
        if updated is None:
            raise GraphError(None, None, "Graph returned no subscription", "renew")
        return _from_sdk(updated)

    async def reauthorize(self, subscription_id: str) -> None:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        await _call(f"reauthorize {subscription_id}", builder.reauthorize.post())

    async def delete(self, subscription_id: str) -> None:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        await _call(f"delete {subscription_id}", builder.delete())


class GraphExports:
    """Graph's export APIs, for reading the messages of a gap back.

    Pages are read as Graph's JSON through the SDK's request adapter (its authentication
    and middleware), at URLs built here: the pipeline parses a message from JSON anyway, and
    the SDK's model round trip and URL templates cost milliseconds per message and per
    request, which a resync over thousands of users pays thousands of times."""

    def __init__(self, client: GraphServiceClient) -> None:
        self._client = client
        self._base = client.request_adapter.base_url.rstrip("/")

    async def user_ids(self) -> list[str]:
        return await self._ids("list users", f"{self._base}/users?%24select=id&%24top=999")

    async def team_ids(self) -> list[str]:
        return await self._ids("list teams", f"{self._base}/teams?%24select=id")

    async def _ids(self, operation: str, url: str) -> list[str]:
        ids: list[str] = []
        link: str | None = url
        while link:
            page = await self._json(operation, link)
            ids.extend(str(item["id"]) for item in page.get("value", []) if item.get("id"))
            link = page.get("@odata.nextLink")
        return ids

    async def chat_page(
        self, user_id: str, start: dt.datetime, end: dt.datetime, link: str | None = None
    ) -> ExportPage:
        """One page of `GET /users/{id}/chats/getAllMessages` filtered to the window, or the
        page `link` (an `@odata.nextLink` of an earlier page) names."""
        url = link or self._export_url(f"users/{quote(user_id, safe='')}/chats", start, end)
        return _page(await self._json(f"export chats of {user_id}", url))

    async def channel_page(
        self, team_id: str, start: dt.datetime, end: dt.datetime, link: str | None = None
    ) -> ExportPage:
        """One page of `GET /teams/{id}/channels/getAllMessages` filtered to the window, or
        the page `link` names."""
        url = link or self._export_url(f"teams/{quote(team_id, safe='')}/channels", start, end)
        return _page(await self._json(f"export channels of {team_id}", url))

    def _export_url(self, collection: str, start: dt.datetime, end: dt.datetime) -> str:
        window = quote(_window(start, end), safe="")
        return f"{self._base}/{collection}/getAllMessages?%24filter={window}"

    async def _json(self, operation: str, url: str) -> dict[str, Any]:
        return await get_json(self._client, operation, url)


async def get_json(
    client: GraphServiceClient, operation: str, url: str, *, prefer: str | None = None
) -> dict[str, Any]:
    """A page of Graph's JSON at `url`, through the SDK's request adapter (authentication,
    retry middleware); errors become `GraphError` or `RetryableError`. `prefer`: the
    request's `Prefer` header (a link Graph returned keeps its query, not its headers)."""
    info = RequestInformation(Method.GET)
    info.url = url
    info.headers.try_add("Accept", "application/json")
    if prefer is not None:
        info.headers.try_add("Prefer", prefer)
    adapter = client.request_adapter
    body = await _call(operation, adapter.send_primitive_async(info, "bytes", _ERRORS))
    try:
        page = json.loads(body) if body else {}
    except ValueError:
        raise GraphError(None, None, "Graph returned a page that is not JSON", operation) from None
    if not isinstance(page, dict) or not isinstance(page.get("value", []), list):
        raise GraphError(None, None, "Graph returned a page without a value list", operation)
    return page


_ERRORS: dict[str, Any] = {"XXX": ODataError}


@dataclass(frozen=True, slots=True)
class ExportPage:
    """Messages as Graph's JSON, and the link to the next page when there is one."""

    messages: list[dict[str, Any]]
    next_link: str | None


def _page(page: dict[str, Any]) -> ExportPage:
    messages = [m for m in page.get("value", []) if isinstance(m, dict)]
    return ExportPage(messages, page.get("@odata.nextLink") or None)


def _window(start: dt.datetime, end: dt.datetime) -> str:
    return f"lastModifiedDateTime gt {_iso(start)} and lastModifiedDateTime lt {_iso(end)}"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _subscriptions_page(builder: Any) -> Any:
    """One page of the subscription list (a fresh request each time it is run)."""
    return await _call("list subscriptions", builder.get())


async def _call(operation: str, awaitable: Any) -> Any:
    try:
        return await awaitable
    except APIError as error:
        status = error.response_status_code
        code, message = _odata(error)
        if status in RETRYABLE_STATUS:
            raise RetryableError(
                status or 0, _retry_after(error), f"{operation}: {status} {message}"
            ) from None
        raise GraphError(status, code, message, operation) from None
    except httpx.TransportError as error:
        raise RetryableError(503, None, f"{operation}: {type(error).__name__}: {error}") from None


def _odata(error: APIError) -> tuple[str | None, str]:
    if isinstance(error, ODataError) and error.error is not None:
        return error.error.code, error.error.message or ""
    return None, error.message or str(error)


def _retry_after(error: APIError) -> float | None:
    headers: Any = error.response_headers
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _from_sdk(subscription: Subscription) -> GraphSubscription:
    if not subscription.id or not subscription.expiration_date_time:
        raise GraphError(None, None, "Graph returned a subscription without id or expiry", "read")
    expiration = subscription.expiration_date_time
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=dt.UTC)
    return GraphSubscription(
        id=subscription.id,
        resource=subscription.resource or "",
        change_type=subscription.change_type or "",
        notification_url=subscription.notification_url or "",
        expiration=expiration,
        lifecycle_notification_url=subscription.lifecycle_notification_url,
        include_resource_data=bool(subscription.include_resource_data),
        encryption_certificate_id=subscription.encryption_certificate_id,
        application_id=subscription.application_id,
    )
