"""Teams-style message bodies with planted sensitive values and hard decoys, labeled.

The simulator uses `teams_message_html` for believable bodies; the inspection benchmark and
tests use `labeled_corpus` to measure precision and recall per type: every planted value is
recorded with its type, decoys are recorded as nothing (a finding on one is a false positive).
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from graphtap.simulation import values

__all__ = [
    "LENGTH_MIX",
    "NAMES",
    "GeneratedBody",
    "LabeledMessage",
    "PlantedValue",
    "labeled_corpus",
    "labeled_message",
    "teams_message_html",
]


@dataclass(frozen=True)
class GeneratedBody:
    """A chatMessage body (`contentType: html`) and the type names planted in it."""

    html: str
    planted: tuple[str, ...]


@dataclass(frozen=True)
class PlantedValue:
    type: str
    value: str


@dataclass(frozen=True)
class LabeledMessage:
    id: str
    html: str
    planted: tuple[PlantedValue, ...]


_FILLER = (
    "can you check the deck before the 3pm sync?",
    "I left comments on slide 4 and the budget table.",
    "Thanks, looks good to me.",
    "Let's move the retro to Thursday, the room is booked on Wednesday.",
    "The build is green again after the dependency bump.",
    "Lunch at 12:30 in building 3?",
    "I'll be out of office from the 14th to the 21st.",
    "Shared the notes in the channel files tab.",
    "Can someone review the pull request for the onboarding flow?",
    "Customer call went well, they want a follow-up demo in two weeks.",
    "Heads-up: the VPN maintenance window starts at 22:00 tonight.",
    "I pushed the fix, please re-run the pipeline when you get a chance.",
    "Agenda: 1) status 2) risks 3) next steps.",
    "Great job on the launch everyone!",
    "We need three more volunteers for the hackathon judging panel.",
    "The Q3 numbers are in the finance workbook, tab 2.",
    "Please fill in the survey before Friday.",
    "Who owns the expense report approvals this month?",
)

NAMES = (
    "Adele Vance",
    "Alex Wilber",
    "Megan Bowen",
    "Lee Gu",
    "Nestor Wilke",
    "Patti Fernandez",
    "Lynne Robbins",
    "Johanna Lorenz",
    "Isaiah Langer",
    "Grady Archie",
)

Template = Callable[[random.Random, str], str]


def _pick(*templates: str) -> Template:
    def render(rng: random.Random, value: str) -> str:
        return rng.choice(templates).format(v=value, n=rng.randint(1, 99))

    return render


# Sentences that carry a true value the way people really paste them. Keyword-dependent types
# (SSN, bank account, passport) always come with a keyword, as a reader would need one too.
_TRUE_TEMPLATES: dict[str, Template] = {
    "credit_card_number": _pick(
        "card number {v} exp 09/28",
        "Here is the corporate visa: {v}",
        "pay with {v}, it is the team card",
        "cc# {v} cvv on the back",
        "{v}",
        "use the amex {v} for the hotel",
    ),
    "us_social_security_number": _pick(
        "SSN: {v}",
        "her social security number is {v}",
        "soc sec {v} for the background check",
        "Employee SSN {v}, please add it to the I-9",
    ),
    "iban": _pick(
        "IBAN {v}",
        "please wire the deposit to {v}",
        "bank details for the supplier: {v} (BIC on the invoice)",
    ),
    "aba_routing_number": _pick(
        "routing number {v}",
        "ABA {v}",
        "the bank's RTN is {v}",
        "transit {v} for the direct deposit form",
    ),
    "us_bank_account_number": _pick(
        "account number {v}",
        "checking account {v}",
        "bank account: {v}",
        "acct # {v} at the credit union",
    ),
    "us_passport_number": _pick(
        "passport number {v}",
        "Passport no. {v}, expires 2031",
        "for the visa application: passport # {v}",
    ),
    "azure_storage_account_key": _pick(
        "AccountName=stfinance{n};AccountKey={v}",
        "storage key for the archive account: {v}",
        "AccountKey={v}",
    ),
    "azure_ad_client_secret": _pick(
        "client secret for the app registration: {v}",
        "AZURE_CLIENT_SECRET={v}",
        "new secret {v} (expires in 6 months)",
    ),
    "aws_access_key_id": _pick(
        "aws_access_key_id = {v}",
        "the CI user key is {v}",
        "export AWS_ACCESS_KEY_ID={v}",
    ),
    "github_token": _pick(
        "token {v}",
        "GITHUB_TOKEN={v}",
        "use my PAT {v} until the app is installed",
    ),
    "private_key": _pick("{v}", "deploy key below\n{v}"),
    "jwt": _pick(
        "Authorization: Bearer {v}",
        "the id token I got back: {v}",
        "token={v}",
    ),
    "slack_token": _pick("SLACK_BOT_TOKEN={v}", "slack token {v}", "bot token: {v}"),
    "google_api_key": _pick("maps key {v}", "GOOGLE_API_KEY={v}", "key={v}"),
    "stripe_secret_key": _pick("STRIPE_SECRET_KEY={v}", "stripe live key {v}", "{v}"),
    "password": _pick(
        "password={v}",
        "Password: {v}",
        "Server=sql-orders-{n}.corp.local,1433;Database=orders;"
        "User ID=svc_orders;Pwd={v};Encrypt=True;",
        "New-ADUser -Name svc_backup -Password '{v}'",
        "the wifi password is {v}",
        "login: jdoe / pwd: {v}",
        'DB_PASSWORD="{v}"',
        '{{"user": "svc_sync", "password": "{v}"}}',
        "  db_pass: '{v}'",
        'dbPassword := "{v}"',
        "mysql --user=report --password '{v}' sales",
        '<add key="SmtpPassword" value="{v}" />',
    ),
    "uk_national_insurance_number": _pick(
        "National Insurance number: {v}",
        "NI no. {v} for the payroll record",
        "her NINO is {v}",
        "{v}",
    ),
    "uk_nhs_number": _pick(
        "NHS number {v}",
        "patient NHS no: {v}, date of birth on file",
    ),
    "canada_social_insurance_number": _pick(
        "SIN: {v}",
        "social insurance number {v} for the T4",
    ),
    "australia_tax_file_number": _pick(
        "TFN {v}",
        "tax file number: {v} (for the super fund)",
    ),
    "australia_medicare_number": _pick(
        "Medicare card number {v}",
        "medicare no. {v}",
    ),
    "india_aadhaar_number": _pick(
        "Aadhaar {v}",
        "aadhaar card number: {v} for the KYC",
    ),
    "india_permanent_account_number": _pick(
        "PAN: {v}",
        "permanent account number {v}",
        "{v} is the vendor's PAN card",
    ),
    "us_individual_taxpayer_identification_number": _pick(
        "ITIN: {v}",
        "taxpayer identification number {v} on the W-7",
    ),
    "france_social_security_number": _pick(
        "numéro de sécurité sociale : {v}",
        "NIR {v}",
        "carte vitale {v}",
    ),
    "spain_dni": _pick("DNI {v}", "documento nacional de identidad: {v}"),
    "italy_fiscal_code": _pick("codice fiscale {v}", "C.F. {v}", "{v}"),
    "netherlands_bsn": _pick("BSN {v}", "burgerservicenummer: {v}"),
    "poland_pesel": _pick("PESEL {v}", "numer PESEL: {v}"),
    "sweden_personal_identity_number": _pick("personnummer {v}", "Personnummer: {v}"),
    "brazil_cpf": _pick("CPF {v}", "número do CPF: {v}"),
    "germany_identity_card_number": _pick("Personalausweis {v}", "Ausweisnummer: {v}"),
    "azure_sas_token": _pick(
        "https://stexports{n}.blob.core.windows.net/reports/q3.csv?sv=2022-11-02&ss=b&srt=co"
        "&sp=rl&se=2026-12-31T23:59:59Z&spr=https&sig={v}",
        "SAS: ?sp=r&st=2026-01-01T00:00:00Z&se=2026-02-01T00:00:00Z&spr=https&sv=2022-11-02"
        "&sr=b&sig={v}",
    ),
    "azure_connection_string": _pick("{v}", "connection string: {v}", "ConnectionStrings__Db={v}"),
    "openai_api_key": _pick("OPENAI_API_KEY={v}", "openai key {v}"),
    "gitlab_token": _pick("PRIVATE-TOKEN: {v}", "gitlab token {v}"),
    "npm_token": _pick("//registry.npmjs.org/:_authToken={v}", "NPM_TOKEN={v}"),
    "pypi_token": _pick("TWINE_PASSWORD={v}", "pypi token {v}"),
    "sendgrid_api_key": _pick("SENDGRID_API_KEY={v}", "sendgrid key {v}"),
    "twilio_api_key": _pick("TWILIO_API_KEY={v}", "twilio api key {v}"),
    "databricks_token": _pick("DATABRICKS_TOKEN={v}", "databricks PAT {v}"),
    "url_credentials": _pick(
        "DATABASE_URL=postgres://app:{v}@db-{n}.corp.local:5432/orders",
        "git remote add origin https://deploy:{v}@git.corp.local/team/app.git",
        "amqp://svc:{v}@mq-{n}.corp.local:5672/",
    ),
}

_DECOY_NAMES = tuple(sorted(values.DECOYS))
_DECOY_TEMPLATES: tuple[str, ...] = (
    "FYI {v}.",
    "{v}, see the thread above.",
    "Re: {v}",
    "noted - {v}",
)


def _true_sentence(rng: random.Random, kind: str, value: str) -> str:
    return _TRUE_TEMPLATES[kind](rng, value)


def _inline_markup(rng: random.Random, kind: str, value: str, sentence: str) -> str:
    """Escape a sentence for HTML and sometimes dress the value in inline markup or NBSPs."""
    escaped_value = html.escape(value, quote=False)
    before, _, after = sentence.partition(value)
    head, tail = html.escape(before, quote=False), html.escape(after, quote=False)
    roll = rng.random()
    if kind == "private_key":
        if roll < 0.5:
            lines = "<br>".join(html.escape(line, quote=False) for line in value.split("\n"))
            return f"{head.replace(chr(10), '<br>')}{lines}{tail}"
        return f"{head.replace(chr(10), '<br>')}<pre><code>{escaped_value}</code></pre>{tail}"
    if kind == "credit_card_number" and " " in value and roll < 0.3:
        groups = value.split(" ")
        groups[1] = f"<b>{groups[1]}</b>"
        return head + " ".join(groups) + tail
    if kind in {"credit_card_number", "iban"} and " " in value and roll < 0.5:
        return head + escaped_value.replace(" ", "&nbsp;") + tail
    if kind in {"credit_card_number", "us_social_security_number"} and roll > 0.93:
        full_width = escaped_value.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
        return head + full_width + tail
    if roll > 0.85 and kind not in {"password", "azure_storage_account_key"}:
        return f"{head}<code>{escaped_value}</code>{tail}"
    if roll > 0.7:
        return f'{head}<span style="color:#d13438">{escaped_value}</span>{tail}'
    return head + escaped_value + tail


def _filler(rng: random.Random) -> str:
    sentence = html.escape(rng.choice(_FILLER), quote=False)
    if rng.random() < 0.2:
        words = sentence.split(" ")
        index = rng.randrange(len(words))
        words[index] = f"<i>{words[index]}</i>"
        sentence = " ".join(words)
    return sentence


def _wrap(rng: random.Random, paragraphs: Sequence[str]) -> str:
    style = rng.random()
    if style < 0.5:
        return "".join(f"<p>{p}</p>" for p in paragraphs)
    if style < 0.8:
        return "<div>" + "".join(f"<div>{p}</div>" for p in paragraphs) + "</div>"
    return "<p>" + "<br>".join(paragraphs) + "</p>"


_COMPONENTS = ("api", "worker", "scheduler", "gateway", "billing", "auth")
_LEVELS = ("INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR")


def _list_block(rng: random.Random) -> str:
    return "<ul>" + "".join(f"<li>{_filler(rng)}</li>" for _ in range(rng.randint(2, 6))) + "</ul>"


def _table_block(rng: random.Random) -> str:
    header = "<tr><th>Item</th><th>Owner</th><th>Ticket</th><th>Due</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(rng.choice(_FILLER)[:40], quote=False)}</td>"
        f"<td>{rng.choice(NAMES)}</td><td>INC{rng.randint(1_000_000, 9_999_999)}</td>"
        f"<td>{rng.randint(1, 12)}/{rng.randint(1, 28)}/2026</td></tr>"
        for _ in range(rng.randint(3, 12))
    )
    return f"<table>{header}{rows}</table>"


def _log_block(rng: random.Random) -> str:
    """Pasted service logs: timestamps, request ids, builds and durations, dense in digits."""
    lines = []
    for _ in range(rng.randint(4, 30)):
        request = "-".join(
            "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
        )
        lines.append(
            f"{values.timestamp(rng)} {rng.choice(_LEVELS)} {rng.choice(_COMPONENTS)} "
            f"request {request} took {rng.randint(1, 4000)} ms {values.version_string(rng)}"
        )
    return "<pre><code>" + html.escape("\n".join(lines), quote=False) + "</code></pre>"


def _forwarded_mail(rng: random.Random) -> str:
    """An Outlook mail shared into Teams: its own style sheet and Word-flavoured markup."""
    sender = rng.choice(NAMES)
    paragraphs = "".join(
        f'<p class="MsoNormal"><span style="font-size:11.0pt;font-family:Calibri">'
        f"{_filler(rng)} {_filler(rng)}</span></p>"
        for _ in range(rng.randint(3, 12))
    )
    return (
        "<div><style>p.MsoNormal{margin:0cm;font-size:11pt} .x{color:#1f497d}</style>"
        f'<p class="MsoNormal"><b>From:</b> {sender} &lt;{sender.split()[0].lower()}'
        f"@northwindtraders.com&gt;<br><b>Sent:</b> {values.timestamp(rng)}<br>"
        f"<b>Subject:</b> {html.escape(rng.choice(_FILLER), quote=False)}</p>{paragraphs}</div>"
    )


_BLOCKS: tuple[Callable[[random.Random], str], ...] = (
    _filler,
    _filler,
    _filler,
    _list_block,
    _table_block,
    _log_block,
    _forwarded_mail,
)
# Message lengths: name -> (range of extra blocks, decoy counts to draw from). Chats are most
# messages; posts and long pastes are few but carry most of the bytes, as in a real tenant.
_LENGTHS: dict[str, tuple[tuple[int, int], tuple[int, ...]]] = {
    "chat": ((0, 0), (0, 0, 0, 1, 1, 2)),
    "post": ((3, 8), (0, 1, 1, 2, 3)),
    "long": ((15, 45), (1, 2, 3, 4, 6)),
}


def labeled_message(
    rng: random.Random,
    *,
    sensitive: bool,
    mentions: Sequence[str] = (),
    kinds: Sequence[str] = (),
    message_id: str = "",
    length: str = "chat",
    decoys: bool = True,
) -> LabeledMessage:
    """One Teams body; `kinds` forces the planted types (else one or two are drawn).

    `length`: "chat" (a line or three), "post" (a few blocks: lists, tables, logs) or "long"
    (a pasted log or a shared mail thread, tens of kilobytes). `decoys=False` leaves out the
    look-alikes, for plain everyday chat.
    """
    (low, high), decoy_counts = _LENGTHS[length]
    planted: list[PlantedValue] = []
    paragraphs: list[str] = []
    if sensitive:
        chosen = list(kinds) or rng.sample(values.SENSITIVE_TYPES, rng.choice((1, 1, 1, 2)))
        for kind in chosen:
            value = values.TRUE_VALUES[kind](rng)
            sentence = _true_sentence(rng, kind, value)
            paragraphs.append(_inline_markup(rng, kind, value, sentence))
            planted.append(PlantedValue(kind, value))
    if decoys:
        if sensitive and length == "chat":
            decoy_counts = (0, 0, 1, 1, 2)
        for _ in range(rng.choice(decoy_counts)):
            decoy = values.DECOYS[rng.choice(_DECOY_NAMES)](rng)
            text = rng.choice(_DECOY_TEMPLATES).format(v=decoy)
            paragraphs.insert(rng.randrange(len(paragraphs) + 1), html.escape(text, quote=False))
    for _ in range(rng.choice((1, 1, 2, 3))):
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), _filler(rng))
    for _ in range(rng.randint(low, high) if high else 0):
        block = rng.choice(_BLOCKS)(rng)
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), block)
    if mentions:
        tags = " ".join(
            f'<at id="{index}">{html.escape(name, quote=False)}</at>'
            for index, name in enumerate(mentions)
        )
        paragraphs[0] = f"{tags}&nbsp;{paragraphs[0]}"
    return LabeledMessage(message_id, _wrap(rng, paragraphs), tuple(planted))


def teams_message_html(
    rng: random.Random, *, sensitive: bool, mentions: Sequence[str] = ()
) -> GeneratedBody:
    """A believable Teams chat body; `sensitive` plants one or two true values.

    Non-sensitive bodies may still carry decoys (order numbers, placeholders, ...) but never
    a true value. Deterministic for a given `rng` state.
    """
    message = labeled_message(rng, sensitive=sensitive, mentions=mentions)
    return GeneratedBody(message.html, tuple(item.type for item in message.planted))


LENGTH_MIX: tuple[tuple[str, float], ...] = (("chat", 0.85), ("post", 0.12), ("long", 0.03))


def labeled_corpus(
    seed: int,
    count: int,
    *,
    sensitive_share: float = 0.4,
    length_mix: Sequence[tuple[str, float]] = LENGTH_MIX,
) -> Iterator[LabeledMessage]:
    """`count` labeled messages, reproducible from `seed`; every type is planted in turn.

    Types rotate so each one appears in roughly `count * sensitive_share / 16` messages.
    Lengths follow `length_mix` (by default 85% chats, 12% posts, 3% long pastes).
    """
    rng = random.Random(seed)
    names = [name for name, _ in length_mix]
    weights = [weight for _, weight in length_mix]
    rotation = 0
    for index in range(count):
        length = rng.choices(names, weights)[0]
        sensitive = rng.random() < sensitive_share
        kinds: list[str] = []
        if sensitive:
            kinds.append(values.SENSITIVE_TYPES[rotation % len(values.SENSITIVE_TYPES)])
            rotation += 1
            if rng.random() < 0.2:
                kinds.append(rng.choice([k for k in values.SENSITIVE_TYPES if k != kinds[0]]))
        mentions = rng.sample(NAMES, rng.choice((0, 1, 1, 2)))
        yield labeled_message(
            rng,
            sensitive=sensitive,
            mentions=mentions,
            kinds=kinds,
            message_id=f"m{index:06d}",
            length=length,
        )
