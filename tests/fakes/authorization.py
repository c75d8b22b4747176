"""Azure's and Entra ID's authorization, for the fakes: who calls, and what the stack grants.

`Estate.from_stack` reads an environment's synthesized `cdk.tf.json` and resolves what
Terraform would: every resource's ARM id, every role assignment (principal, role, scope)
and every Microsoft Graph app role assignment. `Authority` is the tenant: it issues signed
tokens per principal (the deploying identity, the runtime identity, Graph's Change Tracking
principal) and decides each data-plane or management call the way Azure RBAC does: a role's
Actions or DataActions must match the operation, and the assignment's scope must be the
resource or one of its ancestors at a path-segment boundary. Graph decides app-only calls
by the token's `roles` claim. Every refusal is recorded, so a test can say which call was
denied and why.

Sources: Azure's built-in role definitions and scope rules as summarised in
`shared/docs/azure-authorization.md` (sections 1, 2 and 4).
"""

from __future__ import annotations

import fnmatch
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from azure.core.credentials import AccessToken, AccessTokenInfo

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
ISSUER = "https://sts.windows.net/{tenant}/"

DEPLOYER, RUNTIME, CHANGE_TRACKING = "deployer", "runtime", "change_tracking"


@dataclass(frozen=True)
class Role:
    actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()


_KV_MGMT_READ = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
)
_BLOB = "Microsoft.Storage/storageAccounts/blobServices"
_QUEUE = "Microsoft.Storage/storageAccounts/queueServices"
_KV = "Microsoft.KeyVault/vaults"

#: The built-in roles the stack (and a deploying identity) uses: their Actions and DataActions.
ROLES: Mapping[str, Role] = {
    "Key Vault Secrets User": Role(
        data_actions=(f"{_KV}/secrets/getSecret/action", f"{_KV}/secrets/readMetadata/action")
    ),
    "Key Vault Secrets Officer": Role(_KV_MGMT_READ, (f"{_KV}/secrets/*",)),
    "Key Vault Certificate User": Role(
        data_actions=(
            f"{_KV}/certificates/read",
            f"{_KV}/secrets/getSecret/action",
            f"{_KV}/secrets/readMetadata/action",
            f"{_KV}/keys/read",
        )
    ),
    "Key Vault Certificates Officer": Role(
        _KV_MGMT_READ,
        (
            f"{_KV}/certificatecas/*",
            f"{_KV}/certificates/*",
            f"{_KV}/certificatecontacts/write",
        ),
    ),
    "Key Vault Reader": Role(
        _KV_MGMT_READ, (f"{_KV}/*/read", f"{_KV}/secrets/readMetadata/action")
    ),
    "Azure Event Hubs Data Sender": Role(
        ("Microsoft.EventHub/*/eventhubs/read",), ("Microsoft.EventHub/*/send/action",)
    ),
    "Azure Event Hubs Data Receiver": Role(
        ("Microsoft.EventHub/*/eventhubs/consumergroups/read",),
        ("Microsoft.EventHub/*/receive/action",),
    ),
    "Storage Blob Data Reader": Role(
        (f"{_BLOB}/containers/read", f"{_BLOB}/generateUserDelegationKey/action"),
        (f"{_BLOB}/containers/blobs/read",),
    ),
    "Storage Blob Data Contributor": Role(
        (
            f"{_BLOB}/containers/delete",
            f"{_BLOB}/containers/read",
            f"{_BLOB}/containers/write",
            f"{_BLOB}/generateUserDelegationKey/action",
        ),
        tuple(
            f"{_BLOB}/containers/blobs/{verb}"
            for verb in ("delete", "read", "write", "move/action", "add/action")
        ),
    ),
    "Storage Queue Data Message Sender": Role(
        data_actions=(f"{_QUEUE}/queues/messages/add/action",)
    ),
    "Storage Queue Data Reader": Role(
        (f"{_QUEUE}/queues/read",), (f"{_QUEUE}/queues/messages/read",)
    ),
    "Storage Queue Data Message Processor": Role(
        data_actions=(f"{_QUEUE}/queues/messages/read", f"{_QUEUE}/queues/messages/process/action")
    ),
    "Monitoring Metrics Publisher": Role(
        ("Microsoft.Insights/Register/Action",),
        ("Microsoft.Insights/Metrics/Write", "Microsoft.Insights/Telemetry/Write"),
    ),
    # What the deploying identity holds outside the stack (README: the deploying identity):
    # it creates the resources, so it may read them; it has no data-plane access by itself.
    "Contributor": Role(("*",)),
}

#: Graph application permissions that satisfy each call, least privileged first.
GRAPH_USERS = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
GRAPH_TEAMS = ("Team.ReadBasic.All", "TeamSettings.Read.All", "TeamSettings.ReadWrite.All")
GRAPH_CHATS = ("Chat.Read.All", "Chat.ReadWrite.All")
GRAPH_CHANNELS = ("ChannelMessage.Read.All",)
#: Reading a mailbox's messages with their bodies (Mail.ReadBasic leaves the body out).
GRAPH_MAIL = ("Mail.Read", "Mail.ReadWrite")
#: Setting a message's policyViolation (DLP enforcement): chats, and channel messages.
GRAPH_CHAT_DLP = ("Chat.UpdatePolicyViolation.All",)
GRAPH_CHANNEL_DLP = ("ChannelMessage.UpdatePolicyViolation.All",)


@dataclass(frozen=True)
class Grant:
    """One `azurerm_role_assignment` of the stack, resolved."""

    key: str  # the Terraform address, e.g. azurerm_role_assignment.runtime_checkpoints_755D6A68
    principal: str
    role: str
    scope: str


@dataclass(frozen=True)
class AppRoleGrant:
    """One `azuread_app_role_assignment` to Microsoft Graph, resolved."""

    key: str
    principal: str
    permission: str


@dataclass(frozen=True)
class Principal:
    name: str
    object_id: str
    app_id: str


@dataclass(frozen=True)
class Denial:
    principal: str
    service: str
    call: str
    needs: str
    resource: str

    def __str__(self) -> str:
        return f"{self.principal}: {self.service} {self.call} needs {self.needs} on {self.resource}"


_REFERENCE = re.compile(r"\$\{([^}]+)\}")
_ROLE_ID = re.compile(r'app_role_ids\["([^"]+)"\]')


class Estate:
    """What a synthesized stack would create: ARM ids, principals, grants, settings."""

    def __init__(
        self,
        document: Mapping[str, Any],
        *,
        subscription_id: str = "00000000-0000-0000-0000-0000000000aa",
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
    ) -> None:
        self.document = document
        self.subscription_id = subscription_id
        self.tenant_id = tenant_id
        self._resources: dict[str, dict[str, Any]] = document.get("resource", {})
        self._data: dict[str, dict[str, Any]] = document.get("data", {})
        self._ids: dict[str, str] = {}
        deployer = str(uuid.uuid5(uuid.NAMESPACE_URL, "deployer"))
        self.principals: dict[str, Principal] = {
            DEPLOYER: Principal(DEPLOYER, deployer, str(uuid.uuid5(uuid.NAMESPACE_URL, "ci"))),
        }
        for name in self._resources.get("azurerm_user_assigned_identity", {}):
            self.principals[RUNTIME] = Principal(
                RUNTIME,
                self._guid("azurerm_user_assigned_identity", name, "principal_id"),
                self._guid("azurerm_user_assigned_identity", name, "client_id"),
            )
        for name, body in self._resources.get("azuread_service_principal", {}).items():
            if body.get("client_id") == GRAPH_CHANGE_TRACKING_APP_ID:
                self.principals[CHANGE_TRACKING] = Principal(
                    CHANGE_TRACKING,
                    self._guid("azuread_service_principal", name, "object_id"),
                    GRAPH_CHANGE_TRACKING_APP_ID,
                )
        self._by_object_id = {p.object_id: p.name for p in self.principals.values()}
        self.grants = tuple(self._role_assignments())
        self.app_roles = tuple(self._app_role_assignments())

    @classmethod
    def from_stack(cls, document: Mapping[str, Any]) -> Estate:
        return cls(document)

    # -- what Terraform would know after apply -------------------------------------------

    def resolve(self, value: Any) -> Any:
        """`value` with every `${...}` reference replaced by what it would be after apply."""
        if isinstance(value, str):
            whole = _REFERENCE.fullmatch(value)
            if whole:
                return self._reference(whole.group(1))
            return _REFERENCE.sub(lambda m: str(self._reference(m.group(1))), value)
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def outputs(self) -> dict[str, Any]:
        """The stack outputs, as `make outputs` saves them."""
        return {
            name: self.resolve(body["value"])
            for name, body in self.document.get("output", {}).items()
        }

    def app_settings(self, kind: str) -> dict[str, str]:
        """The app settings of the (single) `azurerm_linux_web_app` or function app."""
        (body,) = self._resources[kind].values()
        return {k: str(v) for k, v in self.resolve(body["app_settings"]).items()}

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: self.resolve(body) for name, body in self._resources.get(kind, {}).items()}

    def resource_id(self, kind: str, name: str) -> str:
        """The ARM id of one resource of the stack, by its Terraform name."""
        key = f"{kind}.{name}"
        if key not in self._ids:
            self._ids[key] = self._arm_id(kind, self._resources[kind][name])
        return self._ids[key]

    def id_of(self, kind: str, **attributes: Any) -> str:
        """The ARM id of the one resource of `kind` whose attributes match."""
        for name, body in self._resources.get(kind, {}).items():
            resolved = self.resolve(body)
            if all(resolved.get(k) == v for k, v in attributes.items()):
                return self.resource_id(kind, name)
        raise KeyError(f"no {kind} with {attributes}")

    def without(self, key: str) -> Estate:
        """The same estate with one role assignment or app role assignment removed."""
        kind, _, name = key.partition(".")
        resources = {k: dict(v) for k, v in self._resources.items()}
        if name not in resources.get(kind, {}):
            raise KeyError(f"{key} is not in the stack")
        del resources[kind][name]
        return Estate(
            {**self.document, "resource": resources},
            subscription_id=self.subscription_id,
            tenant_id=self.tenant_id,
        )

    # -- internals ------------------------------------------------------------------------

    def _guid(self, *parts: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))

    def _reference(self, expression: str) -> Any:
        parts = expression.split(".")
        if parts[0] == "data":
            kind, name, attribute = parts[1], parts[2], ".".join(parts[3:])
            if kind == "azurerm_client_config":
                return {
                    "tenant_id": self.tenant_id,
                    "subscription_id": self.subscription_id,
                    "object_id": self.principals[DEPLOYER].object_id,
                    "client_id": self.principals[DEPLOYER].app_id,
                }[attribute]
            body = self._data.get(kind, {}).get(name, {})
            if role := _ROLE_ID.fullmatch(attribute):
                return f"graph-app-role:{role.group(1)}"
            if attribute in body:
                return self.resolve(body[attribute])
            return self._guid("data", kind, name, attribute)
        kind, name, attribute = parts[0], parts[1], ".".join(parts[2:])
        body = self._resources.get(kind, {}).get(name)
        if body is None:
            raise KeyError(f"${{{expression}}}: no such resource in the stack")
        if attribute in ("id", "resource_manager_id", "resource_manager_versionless_id"):
            return self.resource_id(kind, name)
        if attribute in ("principal_id", "client_id", "object_id", "tenant_id"):
            return self._guid(kind, name, attribute)
        if attribute == "immutable_id":  # a data collection rule's, in its ingestion URLs
            return "dcr-" + self._guid(kind, name, attribute).replace("-", "")
        if attribute == "logs_ingestion_endpoint":  # a data collection endpoint's host
            resolved = self.resolve(body)
            suffix = self._guid(kind, name, attribute)[:4]
            return (
                f"https://{resolved['name']}-{suffix}.{resolved['location']}-1"
                ".ingest.monitor.azure.com"
            )
        if attribute in body:
            return self.resolve(body[attribute])
        return f"<{expression}>"  # known only after apply and not needed by any fake

    def _arm_id(self, kind: str, body: Mapping[str, Any]) -> str:
        resolved = self.resolve(body)
        name = resolved["name"]
        subscription = f"/subscriptions/{self.subscription_id}"
        if kind == "azurerm_resource_group":
            return f"{subscription}/resourceGroups/{name}"
        parents = {
            "azurerm_eventhub": ("namespace_id", "eventhubs"),
            "azurerm_key_vault_certificate": ("key_vault_id", "certificates"),
            "azurerm_key_vault_secret": ("key_vault_id", "secrets"),
            "azurerm_storage_container": ("storage_account_id", "blobServices/default/containers"),
            "azurerm_storage_queue": ("storage_account_id", "queueServices/default/queues"),
        }
        if kind in parents:
            parent, segment = parents[kind]
            return f"{resolved[parent]}/{segment}/{name}"
        group = f"{subscription}/resourceGroups/{resolved['resource_group_name']}"
        if kind == "azurerm_eventhub_consumer_group":
            return (
                f"{group}/providers/Microsoft.EventHub/namespaces/{resolved['namespace_name']}"
                f"/eventhubs/{resolved['eventhub_name']}/consumergroups/{name}"
            )
        providers = {
            "azurerm_eventhub_namespace": "Microsoft.EventHub/namespaces",
            "azurerm_key_vault": "Microsoft.KeyVault/vaults",
            "azurerm_storage_account": "Microsoft.Storage/storageAccounts",
            "azurerm_user_assigned_identity": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "azurerm_log_analytics_workspace": "Microsoft.OperationalInsights/workspaces",
            "azurerm_monitor_data_collection_endpoint": (
                "Microsoft.Insights/dataCollectionEndpoints"
            ),
            "azurerm_monitor_data_collection_rule": "Microsoft.Insights/dataCollectionRules",
        }
        provider = providers.get(kind, f"terraform/{kind}")
        return f"{group}/providers/{provider}/{name}"

    def _principal(self, object_id: str, key: str) -> str:
        try:
            return self._by_object_id[object_id]
        except KeyError:
            raise KeyError(f"{key}: principal {object_id} is none the estate knows") from None

    def _role_assignments(self) -> Iterable[Grant]:
        for name, body in self._resources.get("azurerm_role_assignment", {}).items():
            key = f"azurerm_role_assignment.{name}"
            resolved = self.resolve(body)
            role = resolved.get("role_definition_name")
            if role not in ROLES:
                raise KeyError(f"{key}: role {role!r} is not in the fakes' role table")
            yield Grant(
                key, self._principal(resolved["principal_id"], key), role, resolved["scope"]
            )

    def _app_role_assignments(self) -> Iterable[AppRoleGrant]:
        for name, body in self._resources.get("azuread_app_role_assignment", {}).items():
            key = f"azuread_app_role_assignment.{name}"
            resolved = self.resolve(body)
            role = str(resolved["app_role_id"])
            if not role.startswith("graph-app-role:"):
                continue  # an app role of another API than Microsoft Graph
            yield AppRoleGrant(
                key,
                self._principal(resolved["principal_object_id"], key),
                role.removeprefix("graph-app-role:"),
            )


#: Grants a deploying identity holds outside the stack: it creates the resource group's
#: resources (and their role assignments), so it can read them through Resource Manager.
PREREQUISITES = (Grant("prerequisite.deployer_contributor", DEPLOYER, "Contributor", "/"),)


def _matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _within(scope: str, resource: str) -> bool:
    scope, resource = scope.rstrip("/").lower(), resource.rstrip("/").lower()
    return scope == "" or resource == scope or resource.startswith(scope + "/")


@dataclass
class Authority:
    """The tenant: tokens per principal, and the RBAC and Graph decisions on each call."""

    estate: Estate
    signing_key: bytes = field(default_factory=lambda: uuid.uuid4().bytes * 2)
    denied: list[Denial] = field(default_factory=list)
    #: (principal, service, call) of every allowed call, for tests that show a grant is used.
    allowed: list[tuple[str, str, str]] = field(default_factory=list)

    def credential(self, principal: str) -> PrincipalCredential:
        if principal not in self.estate.principals:
            raise KeyError(f"the stack has no {principal} principal")
        return PrincipalCredential(self, principal)

    def issue(self, principal: str, scope: str) -> str:
        who = self.estate.principals[principal]
        audience = scope.removesuffix("/.default")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": ISSUER.format(tenant=self.estate.tenant_id),
            "tid": self.estate.tenant_id,
            "oid": who.object_id,
            "appid": who.app_id,
            "iat": now,
            "exp": now + 3600,
        }
        if audience == GRAPH_AUDIENCE:
            claims["roles"] = sorted(
                g.permission for g in self.estate.app_roles if g.principal == principal
            )
        return jwt.encode(claims, self.signing_key, algorithm="HS256")

    def caller(self, token: str | None) -> tuple[str, dict[str, Any]] | None:
        """The principal a bearer token was issued to (None: missing, forged or expired)."""
        if not token:
            return None
        try:
            claims = jwt.decode(
                token.removeprefix("Bearer ").strip(),
                self.signing_key,
                algorithms=["HS256"],
                options={"verify_aud": False},
            )
        except jwt.InvalidTokenError:
            return None
        name = self.estate._by_object_id.get(str(claims.get("oid")))
        return (name, claims) if name else None

    def check(
        self,
        token: str | None,
        *,
        service: str,
        call: str,
        resource: str,
        data_action: str | None = None,
        action: str | None = None,
    ) -> Denial | None:
        """Allow the call if a grant of the caller covers the operation on `resource`."""
        who = self.caller(token)
        needs = data_action or action or ""
        if who is None:
            denial = Denial("anonymous", service, call, "a valid bearer token", resource)
            self.denied.append(denial)
            return denial
        principal = who[0]
        for grant in (*self.estate.grants, *PREREQUISITES):
            if grant.principal != principal or not _within(grant.scope, resource):
                continue
            role = ROLES[grant.role]
            patterns = role.data_actions if data_action else role.actions
            if any(_matches(p, needs) for p in patterns):
                self.allowed.append((principal, service, call))
                return None
        denial = Denial(principal, service, call, needs, resource)
        self.denied.append(denial)
        return denial

    def refuse_arm(
        self, token: str | None, *, call: str, scope: str, action: str
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Resource Manager's answer to a management call the caller's roles do not grant
        (403 AuthorizationFailed, worded as Azure words it), or None when they do."""
        denial = self.check(
            token, service="Resource Manager", call=call, resource=scope, action=action
        )
        if denial is None:
            return None
        message = (
            f"The client '{denial.principal}' does not have authorization to perform action "
            f"'{action}' over scope '{scope}' or the scope is invalid."
        )
        return 403, {"error": {"code": "AuthorizationFailed", "message": message}}, {}

    def check_graph(self, token: str | None, *, call: str, any_of: Iterable[str]) -> Denial | None:
        """Graph's app-only decision: one of `any_of` among the token's `roles`."""
        wanted = tuple(any_of)
        who = self.caller(token)
        if who is None:
            denial = Denial("anonymous", "Microsoft Graph", call, "a valid bearer token", "graph")
            self.denied.append(denial)
            return denial
        principal, claims = who
        if set(wanted) & set(claims.get("roles", ())):
            self.allowed.append((principal, "Microsoft Graph", call))
            return None
        denial = Denial(principal, "Microsoft Graph", call, " or ".join(wanted), "tenant")
        self.denied.append(denial)
        return denial

    def roles_of(self, token: str | None) -> tuple[str, ...]:
        who = self.caller(token)
        return tuple(who[1].get("roles", ())) if who else ()


class PrincipalCredential:
    """An async token credential for one principal of the estate, as managed identity or
    the deploying identity's login would be: a fresh signed token for each scope."""

    def __init__(self, authority: Authority, principal: str) -> None:
        self.authority = authority
        self.principal = principal

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken(self.authority.issue(self.principal, scopes[0]), int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(
            self.authority.issue(self.principal, scopes[0]), int(time.time()) + 3600
        )

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> PrincipalCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
