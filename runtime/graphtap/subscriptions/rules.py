"""Graph's subscription rules as data: which resources, how long they may live, which permission.

Each rule carries examples of resources it matches and does not match, so one parametrised
test keeps the patterns honest. Lifetimes are the current published maxima; the older
60-minute Teams figure is history, and the renewal share stays configurable either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Teams subscriptions living longer than this need a lifecycleNotificationUrl.
TEAMS_LIFECYCLE_THRESHOLD_MINUTES = 60
#: Graph raises a shorter expiration to now + 45 minutes.
MIN_LIFETIME_MINUTES = 45
#: Writes (POST, PATCH, DELETE) per app per tenant in any 20-second window.
WRITES_PER_WINDOW = 500
#: List requests (GET /subscriptions) per app per tenant in any 20-second window.
LISTS_PER_WINDOW = 25
WINDOW_SECONDS = 20.0
#: The export APIs (`/users/{id}/chats/getAllMessages`, `/teams/{id}/channels/getAllMessages`)
#: allow 200 requests per second per app per tenant, and a sustained limit of about 83 % of
#: that; the pacer stays under both readings.
EXPORT_REQUESTS_PER_SECOND = 200
EXPORT_SUSTAINED_SHARE = 0.83
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
MAX_CLIENT_STATE_CHARS = 128


@dataclass(frozen=True, slots=True)
class ResourceRule:
    """One family of subscribable resources and what Graph demands of its subscriptions."""

    name: str
    pattern: str
    max_minutes_basic: int
    max_minutes_rich: int
    permissions: tuple[str, ...]
    teams: bool = False
    rich_requires_select: bool = False
    matches: tuple[str, ...] = ()
    non_matches: tuple[str, ...] = ()

    def match(self, resource: str) -> bool:
        path = resource.split("?", 1)[0]
        return re.fullmatch(self.pattern, path, flags=re.IGNORECASE) is not None

    def max_minutes(self, rich: bool) -> int:
        return self.max_minutes_rich if rich else self.max_minutes_basic


_ID = r"[^/?]+"
RULES: tuple[ResourceRule, ...] = (
    ResourceRule(
        name="teams-channel-messages",
        pattern=rf"/teams/getAllMessages|/teams/{_ID}/channels/{_ID}/messages",
        max_minutes_basic=4320,
        max_minutes_rich=4320,
        permissions=("ChannelMessage.Read.All", "ChannelMessage.Read.Group"),
        teams=True,
        matches=("/teams/getAllMessages", "/teams/t1/channels/19:abc@thread.tacv2/messages"),
        non_matches=("/teams/t1/channels", "/chats/getAllMessages"),
    ),
    ResourceRule(
        name="teams-chat-messages",
        pattern=rf"/chats/getAllMessages|/chats/{_ID}/messages|/users/{_ID}/chats/getAllMessages",
        max_minutes_basic=4320,
        max_minutes_rich=4320,
        permissions=("Chat.Read.All",),
        teams=True,
        matches=(
            "/chats/getAllMessages",
            "/chats/19:x@unq.gbl.spaces/messages",
            "/users/u1/chats/getAllMessages",
        ),
        non_matches=("/chats", "/users/u1/messages"),
    ),
    ResourceRule(
        name="teams-installed-chat-messages",
        pattern=rf"/appCatalogs/teamsApps/{_ID}/installedToChats/getAllMessages",
        max_minutes_basic=4320,
        max_minutes_rich=4320,
        permissions=("Chat.Read.WhereInstalled",),
        teams=True,
        matches=("/appCatalogs/teamsApps/app1/installedToChats/getAllMessages",),
        non_matches=("/appCatalogs/teamsApps/app1",),
    ),
    ResourceRule(
        name="outlook-messages",
        pattern=rf"/users/{_ID}/messages|/users/{_ID}/mailFolders/{_ID}/messages",
        max_minutes_basic=10080,
        max_minutes_rich=1440,
        permissions=("Mail.Read",),
        rich_requires_select=True,
        matches=("/users/u1/messages", "/users/u1/mailFolders/inbox/messages"),
        non_matches=("/users/u1/events", "/users/u1/chats/getAllMessages"),
    ),
    ResourceRule(
        name="outlook-events",
        pattern=rf"/users/{_ID}/events",
        max_minutes_basic=10080,
        max_minutes_rich=1440,
        permissions=("Calendars.Read",),
        rich_requires_select=True,
        matches=("/users/u1/events",),
        non_matches=("/users/u1/messages",),
    ),
)


def rule_for(resource: str) -> ResourceRule | None:
    return next((rule for rule in RULES if rule.match(resource)), None)


def is_write_permission(permission: str) -> bool:
    """Graph refuses subscriptions backed only by write-scoped permissions."""
    return "Write" in permission
