"""Microsoft Graph application permissions for the runtime identity, as app role assignments on
Graph's service principal: the runtime calls Graph with its managed identity, no secret exists.
Granting them needs an admin who may consent (Privileged Role Administrator or higher)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graphtap.inspection import load_policy
from graphtap.subscriptions.desired import load_desired
from graphtap.subscriptions.rules import rule_for
from stacks.cdk import AppRoleAssignment, Construct, DataAzureadServicePrincipal

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Gap resync reads messages back through the export APIs, which take a user or a team:
#: it lists users (`GET /users`) and teams (`GET /teams`) with the least that allows each.
RESYNC_PERMISSIONS = ("User.Read.All", "Team.ReadBasic.All")
#: Setting a message's policyViolation (DLP enforcement), chats and channels: granted only to
#: an environment whose policy enforces.
ENFORCEMENT_PERMISSIONS = (
    "Chat.UpdatePolicyViolation.All",
    "ChannelMessage.UpdatePolicyViolation.All",
)
#: Outlook messages are read from Graph for inspection (a mail notification carries no
#: body): an environment that declares mailbox subscriptions is granted the read.
MAIL_PERMISSIONS = ("Mail.Read",)
POLICY_FILE = "policy.toml"
SUBSCRIPTIONS_FILE = "subscriptions.toml"


def subscription_permissions(
    stack_file: Path, environment: str, granted: Sequence[str]
) -> tuple[str, ...]:
    """The roles the environment's `subscriptions.toml` (beside its `stack.toml`) needs
    beyond `granted`: Mail.Read when it declares mailboxes (their notifications carry no
    body, the runtime reads each message). A declaration that needs a permission the stack
    does not grant fails the synth, naming the environment, the file and the resource, as
    does a `permissions` entry (what the app is said to hold) the stack does not grant."""
    path = stack_file.parent / SUBSCRIPTIONS_FILE
    if not path.is_file():
        return ()
    desired = load_desired(environment, path=path)
    extra: list[str] = []
    problems: list[str] = []
    for resource in desired.declared:
        rule = rule_for(resource)
        if rule is None or set(rule.permissions) & {*granted, *extra}:
            continue
        if set(rule.permissions) <= set(MAIL_PERMISSIONS):
            extra.extend(MAIL_PERMISSIONS)
        else:
            problems.append(
                f"{resource} needs one of {', '.join(rule.permissions)}, which the stack does "
                "not grant"
            )
    problems += [
        f"permissions lists {permission}, which the stack does not grant"
        for permission in desired.permissions
        if permission not in {*granted, *extra}
    ]
    if problems:
        raise ValueError(
            f"environment {environment}: {path}: "
            + "; ".join(problems)
            + f" (add it to [graph] permissions in {stack_file}, or drop the declaration)"
        )
    return tuple(extra)


def enforcement_permissions(stack_file: Path, *, processor: str = "webapp") -> tuple[str, ...]:
    """The enforcement roles when the environment's `policy.toml` (beside its `stack.toml`)
    says `[enforcement] mode = "enforce"`; none otherwise (no file: the packaged default,
    which only reports). An invalid policy fails the synth, naming the file and the key, as
    does enforcing where only the Function App processes: the actor runs in the web app."""
    path = stack_file.parent / POLICY_FILE
    if not path.is_file():
        return ()
    policy = load_policy(path)
    assert policy is not None
    if policy.enforcement.mode != "enforce":
        return ()
    if processor == "function":
        raise ValueError(
            f'{path} [enforcement] mode: "enforce" needs the web app to process notifications'
            f' (the actor runs there); set hosting.processor = "webapp" or "both" in'
            f' {stack_file}, or mode = "dry_run"'
        )
    return ENFORCEMENT_PERMISSIONS


@dataclass(frozen=True)
class GraphPermissionsProps:
    principal_object_id: str
    permissions: Sequence[str]


class GraphPermissions(Construct):
    def __init__(self, scope: Construct, id_: str, props: GraphPermissionsProps) -> None:
        super().__init__(scope, id_)
        self.graph = DataAzureadServicePrincipal(
            self, "microsoft_graph", client_id=MICROSOFT_GRAPH_APP_ID
        )
        self.assignments = {
            permission: AppRoleAssignment(
                self,
                permission.replace(".", "_"),
                app_role_id=self.graph.app_role_ids.lookup(permission),
                principal_object_id=props.principal_object_id,
                resource_object_id=self.graph.object_id,
            )
            for permission in props.permissions
        }
