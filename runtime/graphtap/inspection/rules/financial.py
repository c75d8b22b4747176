"""Payment, identity and bank numbers, scored as Microsoft Purview scores them."""

from __future__ import annotations

from collections.abc import Iterator

from graphtap.inspection import validators
from graphtap.inspection.rules.base import NUMBER_AFTER, NUMBER_BEFORE, Evidence, Rule, joined

_FULL_WIDTH = {ord(d): 0xFF10 + int(d) for d in "0123456789"}


def _digits(value: str) -> str:
    return validators.digits_of(value)


def _compact_upper(value: str) -> str:
    return value.replace(" ", "").replace("-", "").upper()


# --- credit card: Luhn alone is low, with a card keyword or an expiry date high -----------


# The first four digits of Visa, Mastercard (51-55, 2221-2720), Amex (34, 37), Diners (300-305,
# 309, 36, 38, 39), JCB (3528-3589), Discover (6011, 644-649, 65), UnionPay (62), Maestro
# (5018, 5020, 5038, 5893, 6304, 6759, 6761-6763) and Dankort (5019).
_MAESTRO = r"50(?:1[89]|20|38)|5893|6304|6759|676[1-3]"
_ISSUER = (
    r"(?:4[0-9]{3}|5[1-5][0-9]{2}|222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720"
    r"|3[47][0-9]{2}|3(?:0[0-5]|09|[689][0-9])[0-9]|35(?:2[89]|[3-8][0-9])"
    rf"|6011|6[25][0-9]{{2}}|64[4-9][0-9]|{_MAESTRO})"
)


def _card_score(evidence: Evidence) -> int:
    return 85 if evidence.keyword or evidence.extra else 65


CREDIT_CARD = Rule(
    type="credit_card_number",
    # An issuer's first four digits, then 4-4-4(-3), 6-5 / 6-4 (Amex, Diners) or 10-15 more;
    # Maestro's shortest numbers, 12 or 13 digits, unformatted.
    pattern=NUMBER_BEFORE
    + rf"(?P<v>{_ISSUER}(?:[ \-][0-9]{{4}}[ \-][0-9]{{4}}[ \-][0-9]{{4}}(?:[ \-][0-9]{{3}})?"
    rf"|[ \-][0-9]{{6}}[ \-][0-9]{{4,5}}|[0-9]{{10,15}})|(?:{_MAESTRO})[0-9]{{8,9}})"
    + NUMBER_AFTER,
    validate=validators.credit_card,
    score=_card_score,
    numeric=True,
    number_length=(12, 23),
    normalise=_digits,
    keywords=joined(
        "card",
        "cards",
        "card number",
        "card no",
        "card #",
        "card#",
        "credit card",
        "debit card",
        "cc#",
        "cc #",
        "cc no",
        "visa",
        "mastercard",
        "master card",
        "amex",
        "american express",
        "discover",
        "jcb",
        "diners club",
        "maestro",
        "dankort",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "cid",
        "security code",
        "exp",
        "exp date",
        "expiry",
        "expiration",
        "expires",
        "valid thru",
        "valid through",
    ),
    extra_evidence=r"(?<![0-9])(?:0[1-9]|1[0-2]) ?/ ?(?:20)?[0-9]{2}(?![0-9/])",
    true_examples=(
        "4111 1111 1111 1111",
        "card number 5500-0000-0000-0004 exp 12/27",
        "amex 3782 822463 10005",
        "pay with 6011000990139424 please",
        "visa " + "4111111111111111".translate(_FULL_WIDTH),
        "maestro 675921299722",  # Maestro runs from 12 to 19 digits
        "Maestro card 5018 0033 2245 3832 364",
        "paid by 6304 2915 0615 9982",
        "Dankort 5019 8013 4110 5616",
    ),
    false_examples=(
        "order id 4111 1111 1111 1112",
        "meeting 123 456 789 012",
        "ref 9111111111111111",
        "build 10.0.4111111111111111",
        "timestamp 20260114093015",
        # An IBAN whose check digits are wrong holds a Luhn-valid Diners run: no card.
        "IBAN FR75 3000 6000 0112 3456 7890 189",
        "dankort 5019 2193 0816 1409 916",  # Luhn-valid, but a Dankort has 16 digits
        "maestro 675921299723",  # Luhn
    ),
)

# --- U.S. SSN: never without a keyword; 85 / 75 / 65 / 55 by format and issuing era --------


def _ssn_score(evidence: Evidence) -> int | None:
    if not evidence.keyword:
        return None
    formatted = not evidence.value.isdigit()
    pre_2011 = validators.ssn_area_issued_before_2011(evidence.value)
    if formatted:
        return 85 if pre_2011 else 65
    return 75 if pre_2011 else 55


SSN = Rule(
    type="us_social_security_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[0-9]{3}(?:-[0-9]{2}-[0-9]{4}| [0-9]{2} [0-9]{4}|[0-9]{6}))"
    + NUMBER_AFTER,
    validate=validators.ssn,
    score=_ssn_score,
    normalise=_digits,
    keywords=joined(
        "ssn",
        "ssns",
        "ss#",
        "ss #",
        "ssn#",
        "social security",
        "social security number",
        "social security no",
        "social security #",
        "soc sec",
        "soc. sec.",
        "ssa number",
        "social sec",
        "ssn no",
        "ss no",
        "social security card",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(9, 11),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "SSN: 536-22-1844",
        "social security number 536 22 1844",
        "socialsecuritynumber=536221844",
        "ssn#536-22-1844",
        "ssn:536221844",
        "ssn 536221844",
        "her SSN is 812-44-1234",
    ),
    false_examples=(
        "536-22-1844",
        "SSN 000-12-3456",
        "SSN 666-12-3456",
        "SSN 912-12-3456",
        "SSN 536-00-1234",
        "SSN 536-22-0000",
        "SSN 078-05-1120",
        "SSN 123-45-6789",
        "ssn: call 425-555-0100",
        "ssn, order # 536221844",
        "ssn at 10:536221844",  # after a time's colon
    ),
)

# --- IBAN: the mod-97 check and the per-country length make it high on its own ------------


def _iban_trims(value: str) -> Iterator[str]:
    """An IBAN printed in groups may be followed by an upper-case word the pattern swallowed."""
    yield value
    separator = "-" if "-" in value else " "
    head = value
    for _ in range(2):
        if separator not in head:
            return
        head = head.rsplit(separator, 1)[0]
        yield head


IBAN = Rule(
    type="iban",
    # Electronic form, or printed in groups of four separated by spaces or by dashes.
    pattern=r"(?<![A-Za-z0-9\-])(?P<v>[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}"
    r"|(?: [A-Z0-9]{4}){2,8}(?: [A-Z0-9]{1,3})?|(?:-[A-Z0-9]{4}){2,8}(?:-[A-Z0-9]{1,3})?))"
    r"(?![A-Za-z0-9])",
    validate=validators.iban,
    score=lambda evidence: 85,
    normalise=_compact_upper,
    trims=_iban_trims,
    keywords=joined("iban", "international bank account number", "bic", "swift"),
    true_examples=(
        "IBAN DE89 3704 0044 0532 0130 00",
        "wire to GB82WEST12345698765432",
        "NL91 ABNA 0417 1643 00 BIC ABNANL2A",
        "BE68 5390 0754 7034 BIC",
        "IBAN DE89-3704-0044-0532-0130-00",
        "FR76 3000 6000 0112 3456 7890 189",  # the digits hold no card number either
    ),
    false_examples=(
        "IBAN DE88 3704 0044 0532 0130 00",
        "GB82WEST1234569876543",
        "XX82WEST12345698765432",
        "ID AB12CDEF34567890123",
        "DE89-3704-0044 0532 0130 00",  # one IBAN is printed with one kind of separator
    ),
)

# --- ABA routing: prefix ranges and 3-7-1; a keyword lifts it from 65 to 75 ---------------


ABA = Rule(
    type="aba_routing_number",
    # Federal Reserve routing symbols 00-12, 21-32, 61-72 and 80, then 7 digits (4-4-1).
    pattern=NUMBER_BEFORE + r"(?P<v>(?:0[0-9]|1[0-2]|2[1-9]|3[0-2]|6[1-9]|7[0-2]|80)[0-9]{2}"
    r"(?:[0-9]{5}|-[0-9]{4}-[0-9]))" + NUMBER_AFTER,
    validate=validators.aba_routing,
    score=lambda evidence: 75 if evidence.keyword else 65,
    normalise=_digits,
    keywords=joined(
        "routing",
        "routing number",
        "routing no",
        "routing #",
        "routing transit",
        "aba",
        "aba number",
        "aba routing",
        "abartn",
        "rtn",
        "transit",
        "transit number",
        "ach",
        "bank routing",
    ),
    numeric=True,
    number_length=(9, 11),
    labelled_elsewhere_excludes=True,
    true_examples=("routing number 021000021", "ABA 011000015", "0110-0001-5 for the ACH"),
    false_examples=(
        "routing number 021000022",
        "routing 991000026",
        "Order # 021000021",
        "conference id: 021000021#",
        "version 1.2.021000021",
    ),
)

# --- U.S. bank account: no checksum, so a keyword is required -----------------------------


BANK_ACCOUNT = Rule(
    type="us_bank_account_number",
    pattern=NUMBER_BEFORE + r"(?P<v>[0-9]{6,17})" + NUMBER_AFTER,
    validate=validators.bank_account,
    score=lambda evidence: 75 if evidence.keyword else None,
    normalise=_digits,
    keywords=joined(
        "account number",
        "account no",
        "account #",
        "account#",
        "acct",
        "acct #",
        "acct#",
        "acct no",
        "acct number",
        "bank account",
        "bank acct",
        "checking account",
        "checking acct",
        "savings account",
        "savings acct",
        "debit account",
        "deposit account",
    ),
    requires_keyword=True,
    numeric=True,
    labelled_elsewhere_excludes=True,
    true_examples=("checking account 4402987751", "acct # 88123456 at the credit union"),
    false_examples=(
        "4402987751",
        "account number 4111111111111111",
        "bank account: ticket 88123456",
        "checking account 11111111",
        "acct phone 4255550100",
        "bank account, as of today 584661 impressions",
        "checking account below, card 3462 793325 60708",  # the middle group of a card
    ),
)

# --- U.S. passport: nine digits, or a letter and eight digits; keyword required -----------


PASSPORT = Rule(
    type="us_passport_number",
    pattern=NUMBER_BEFORE + r"(?P<v>[0-9A-Z][0-9]{8})" + NUMBER_AFTER,
    validate=validators.passport,
    score=lambda evidence: 75 if evidence.keyword else None,
    normalise=str.upper,
    keywords=joined(
        "passport",
        "passports",
        "passport number",
        "passport no",
        "passport #",
        "passport#",
        "passport card",
        "travel document",
        "passport num",
        "pass no",
        "us passport",
        "u.s. passport",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(9, 9),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "passport number 546123987",
        "Passport no. E12345678, expires 2031",
        "her passport ID 546123987",
        "passportnumber: 546123987",
        "PassportNo=E12345678",
    ),
    false_examples=(
        "E12345678",
        "passport number 111111111",
        "passport, invoice 546123987",
        "passport AB1234567",
    ),
)

# IBAN first: its letters and mod-97 are more specific than a Luhn-valid run of its digits.
RULES: tuple[Rule, ...] = (IBAN, CREDIT_CARD, SSN, ABA, PASSPORT, BANK_ACCOUNT)
