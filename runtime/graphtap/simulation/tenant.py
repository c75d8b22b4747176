"""A synthetic Microsoft 365 tenant: people, chats, team channels, mailboxes and their messages.

Messages are Graph `chatMessage` resources as a rich notification carries them once
decrypted: HTML bodies with `<at>` mentions, channel identity or chat id, sender, etag and
timestamps. Mail is Outlook `message` resources as `GET /users/{id}/messages/{id}` serves
them (a notification only names them). Everything derives from one `random.Random`, so a seed
reproduces a tenant.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from graphtap.simulation.corpus import teams_message_html

FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Frances",
    "Linus",
    "Radia",
    "Tim",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Sophie",
    "Leslie",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Allen",
    "Torvalds",
    "Perlman",
    "Lee",
    "Lamarr",
    "Knuth",
    "Johnson",
)
TEAM_NAMES = ("Finance", "Payroll", "Engineering", "Sales", "Legal", "Support", "HR", "Security")
CHANNEL_NAMES = ("General", "Announcements", "Incidents", "Customers", "Reviews", "Random")
MAIL_SUBJECTS = (
    "Quarterly numbers",
    "Re: access for the new contractor",
    "Invoice follow-up",
    "FW: customer escalation",
    "Credentials for the staging box",
    "Payroll corrections",
    "Notes from today",
)
ATTACHMENTS = (
    ("report.pdf", "application/pdf"),
    ("export.csv", "text/csv"),
    ("scan.png", "image/png"),
    ("notes.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat (`chat_id`) or a team channel (`team_id`, `channel_id`)."""

    members: tuple[User, ...]
    chat_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None

    @property
    def is_channel(self) -> bool:
        return self.channel_id is not None

    def message_resource(self, message_id: str) -> str:
        if self.is_channel:
            return f"teams('{self.team_id}')/channels('{self.channel_id}')/messages('{message_id}')"
        return f"chats('{self.chat_id}')/messages('{message_id}')"


@dataclass(slots=True)
class Message:
    id: str
    conversation: Conversation
    sender: User
    created: dt.datetime
    modified: dt.datetime
    html: str
    mentions: tuple[User, ...]
    planted: tuple[str, ...]
    deleted: dt.datetime | None = None

    @property
    def resource(self) -> str:
        return self.conversation.message_resource(self.id)

    @property
    def etag(self) -> str:
        return str(int(self.modified.timestamp() * 1000))

    def to_graph(self) -> dict[str, Any]:
        """The chatMessage JSON, shaped as Graph's rich notifications deliver it."""
        conversation = self.conversation
        return {
            "@odata.context": "https://graph.microsoft.com/$metadata#chatMessages/$entity",
            "id": self.id,
            "replyToId": None,
            "etag": self.etag,
            "messageType": "message",
            "createdDateTime": _iso(self.created),
            "lastModifiedDateTime": _iso(self.modified),
            "lastEditedDateTime": _iso(self.modified) if self.modified != self.created else None,
            "deletedDateTime": _iso(self.deleted) if self.deleted else None,
            "subject": None,
            "summary": None,
            "chatId": conversation.chat_id,
            "importance": "normal",
            "locale": "en-us",
            "webUrl": None,
            "channelIdentity": (
                {"teamId": conversation.team_id, "channelId": conversation.channel_id}
                if conversation.is_channel
                else None
            ),
            "from": {
                "application": None,
                "device": None,
                "user": {
                    "id": self.sender.id,
                    "displayName": self.sender.display_name,
                    "userIdentityType": "aadUser",
                },
            },
            "body": {"contentType": "html", "content": self.html},
            "attachments": [],
            "mentions": [
                {
                    "id": index,
                    "mentionText": user.display_name,
                    "mentioned": {
                        "user": {
                            "id": user.id,
                            "displayName": user.display_name,
                            "userIdentityType": "aadUser",
                        }
                    },
                }
                for index, user in enumerate(self.mentions)
            ],
            "policyViolation": None,
            "reactions": [],
            "hostedContents": [],
        }


@dataclass(slots=True)
class Mail:
    """An Outlook message in `mailbox`; `version` moves on every change (its changeKey)."""

    id: str
    mailbox: User
    sender: User
    subject: str
    html: str
    attachments: tuple[tuple[str, str, int], ...]
    received: dt.datetime
    modified: dt.datetime
    planted: tuple[str, ...]
    version: int = 1

    @property
    def change_key(self) -> str:
        return f"CQAAABYAAAD{self.version:04d}{self.id[-8:]}"

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    def to_graph(self) -> dict[str, Any]:
        """The message as Graph serves it (attachments are listed apart, as in Graph)."""
        return {
            "@odata.etag": self.etag,
            "id": self.id,
            "changeKey": self.change_key,
            "createdDateTime": _iso(self.received),
            "receivedDateTime": _iso(self.received),
            "sentDateTime": _iso(self.received),
            "lastModifiedDateTime": _iso(self.modified),
            "hasAttachments": bool(self.attachments),
            "internetMessageId": f"<{self.id[-16:]}@contoso.example>",
            "subject": self.subject,
            "importance": "normal",
            "isRead": self.version > 1,
            "isDraft": False,
            "body": {"contentType": "html", "content": self.html},
            "from": _address(self.sender),
            "sender": _address(self.sender),
            "toRecipients": [_address(self.mailbox)],
            "ccRecipients": [],
            "bccRecipients": [],
        }

    def attachment_list(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "contentType": content_type, "size": size}
            for name, content_type, size in self.attachments
        ]


@dataclass
class SyntheticTenant:
    """People, chats and channels, and the messages they exchange over simulated time."""

    rng: random.Random
    tenant_id: str
    users: tuple[User, ...]
    conversations: tuple[Conversation, ...]
    clock: dt.datetime
    messages: list[Message] = field(default_factory=list)
    _live: list[Message] = field(default_factory=list)
    mail: list[Mail] = field(default_factory=list)

    @classmethod
    def create(cls, rng: random.Random, *, start: dt.datetime, users: int = 40) -> SyntheticTenant:
        people = tuple(
            User(_uuid(rng), f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}")
            for _ in range(users)
        )
        conversations: list[Conversation] = []
        for _ in range(max(4, users // 2)):
            members = tuple(rng.sample(people, rng.randint(2, 6)))
            conversations.append(
                Conversation(
                    members, chat_id=f"19:{uuid.UUID(int=rng.getrandbits(128)).hex}@thread.v2"
                )
            )
        for team in TEAM_NAMES[: max(2, users // 8)]:
            team_id = _uuid(rng)
            members = tuple(rng.sample(people, min(len(people), rng.randint(5, 15))))
            for channel in rng.sample(CHANNEL_NAMES, 3):
                channel_id = (
                    f"19:{team.lower()}{channel.lower()}{rng.getrandbits(32):08x}@thread.tacv2"
                )
                conversations.append(Conversation(members, team_id=team_id, channel_id=channel_id))
        return cls(rng, _uuid(rng), people, tuple(conversations), start)

    def tick(self) -> dt.datetime:
        self.clock += dt.timedelta(milliseconds=self.rng.randint(50, 4000))
        return self.clock

    def post(self, *, sensitive: bool) -> Message:
        """A new message in a random conversation."""
        conversation = self.rng.choice(self.conversations)
        sender = self.rng.choice(conversation.members)
        others = [m for m in conversation.members if m != sender]
        mentions = tuple(self.rng.sample(others, min(len(others), self.rng.choice((0, 0, 1, 2)))))
        body = teams_message_html(
            self.rng, sensitive=sensitive, mentions=[m.display_name for m in mentions]
        )
        now = self.tick()
        message = Message(
            id=str(int(now.timestamp() * 1000)) + f"{self.rng.randint(0, 999):03d}",
            conversation=conversation,
            sender=sender,
            created=now,
            modified=now,
            html=body.html,
            mentions=mentions,
            planted=body.planted,
        )
        self.messages.append(message)
        self._live.append(message)
        return message

    def edit(self, *, sensitive: bool) -> Message | None:
        """An edit of an earlier message: new body, new etag."""
        if not self._live:
            return None
        message = self.rng.choice(self._live)
        body = teams_message_html(
            self.rng,
            sensitive=sensitive,
            mentions=[m.display_name for m in message.mentions],
        )
        message.html, message.planted = body.html, body.planted
        message.modified = self.tick()
        return message

    def receive(self, mailboxes: tuple[User, ...], *, sensitive: bool) -> Mail:
        """New mail in one of `mailboxes`, from a colleague."""
        mailbox = self.rng.choice(mailboxes)
        sender = self.rng.choice([u for u in self.users if u != mailbox] or [mailbox])
        body = teams_message_html(self.rng, sensitive=sensitive)
        attachments = tuple(
            (f"{self.rng.choice(('q3', 'draft', 'final', 'ops'))}-{name}", kind, size)
            for name, kind in self.rng.sample(ATTACHMENTS, self.rng.choice((0, 0, 1, 2)))
            for size in (self.rng.randint(2_000, 900_000),)
        )
        now = self.tick()
        raw = uuid.UUID(int=self.rng.getrandbits(128)).bytes * 2
        mail = Mail(
            id="AAMkAG" + base64.urlsafe_b64encode(raw).decode().rstrip("="),
            mailbox=mailbox,
            sender=sender,
            subject=self.rng.choice(MAIL_SUBJECTS),
            html=body.html,
            attachments=attachments,
            received=now,
            modified=now,
            planted=body.planted,
        )
        self.mail.append(mail)
        return mail

    def reread(self) -> Mail | None:
        """Earlier mail read or flagged: its content stays, its version moves."""
        if not self.mail:
            return None
        mail = self.rng.choice(self.mail)
        mail.version += 1
        mail.modified = self.tick()
        return mail

    def delete(self) -> Message | None:
        if not self._live:
            return None
        message = self._live.pop(self.rng.randrange(len(self._live)))
        message.deleted = message.modified = self.tick()
        return message


def _address(user: User) -> dict[str, Any]:
    local = user.display_name.lower().replace(" ", ".")
    return {"emailAddress": {"name": user.display_name, "address": f"{local}@contoso.example"}}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
