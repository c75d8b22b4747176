"""National identifiers outside the U.S. (and the U.S. ITIN), as their issuers define them.

Each validator is the issuer's own check (see `validators`); keywords follow Microsoft
Purview's keyword lists for the type. Digit-only formats with a single check digit need a
keyword; formats with a check letter or a long check are reported without one at medium
confidence. Purview needs a keyword for most digit-only formats too, but rates a PESEL, a
personnummer and an unformatted CPF 75 alone; here they need one, since a random order or
phone number of that length passes their checks about one time in fifty.
"""

from __future__ import annotations

from collections.abc import Callable

from graphtap.inspection import validators
from graphtap.inspection.rules.base import NUMBER_AFTER, NUMBER_BEFORE, Evidence, Rule, joined


def _digits(value: str) -> str:
    return validators.digits_of(value)


def _compact(value: str) -> str:
    return "".join(char for char in value.upper() if char.isalnum())


def _keyword_or(alone: int | None) -> Callable[[Evidence], int | None]:
    """85 with a supporting keyword, else `alone` (None: not reported without one)."""

    def score(evidence: Evidence) -> int | None:
        return 85 if evidence.keyword else alone

    return score


def _formatted(evidence: Evidence) -> bool:
    return not evidence.value.isalnum()


# --- United Kingdom -----------------------------------------------------------------------

# HMRC's prefix letters (see `validators.uk_nino`), six digits, suffix A-D; written together,
# in pairs separated by spaces or dashes, or with the six digits set apart by spaces
# (`PR 123612C`).
_NINO = (
    r"(?<![A-Za-z0-9])(?P<v>[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?: ?[0-9]{6} ?| [0-9]{2} [0-9]{2} [0-9]{2} |-[0-9]{2}-[0-9]{2}-[0-9]{2}-)[A-D])"
    r"(?![A-Za-z0-9])"
)
_NINO_KEYWORDS = joined(
    "national insurance number",
    "national insurance no",
    "national insurance",
    "national insurance contributions",
    "nino",
    "ni number",
    "ni no",
    "ni #",
    "ni#",
    "insurance#",
    "nationalinsurance#",
    "social insurance",
    "insurance application",
)

UK_NINO = Rule(
    type="uk_national_insurance_number",
    pattern=_NINO,
    validate=validators.uk_nino,
    score=_keyword_or(75),
    normalise=_compact,
    keywords=_NINO_KEYWORDS,
    true_examples=(
        "National Insurance number: AB 12 34 56 C",
        "nino=JG103759A",
        "her NI no. is PE-65-43-21-D",
        "CE123456B on the payroll form",
        "NI no: PR 640215C",
        "PR 640215 C",
    ),
    false_examples=(
        "QQ 12 34 56 C",  # HMRC's own specimen uses the never-issued prefix QQ
        "national insurance number GB123456A",  # GB is not allocated
        "NI number AB123456E",  # the suffix is A-D
        "DA123456A",  # D is never a first letter
        "AB 12 34 56C",  # pairs are separated throughout or not at all
        "AB 1234 56 C",
        "jt 40 71 88 b",  # in lower case, only with a keyword (below)
    ),
)

UK_NINO_ANY_CASE = Rule(
    type="uk_national_insurance_number",
    # Typed in lower case in chats (`hh 01 02 03 d`): with a keyword only, as lower-case
    # letters around six digits are common in ids and logs ("request 714629ac-...").
    pattern=_NINO,
    ignore_case=True,
    longest=15,
    validate=validators.uk_nino,
    score=_keyword_or(None),
    normalise=_compact,
    # Fewer than the rule above: its keywords are Hyperscan literals, and short ones that
    # prose is full of (`ni no`) would slow the scan of every message.
    keywords=joined("national insurance", "ni number", "social insurance", "nino"),
    requires_keyword=True,
    true_examples=(
        "my ni number is jt 40 71 88 b",
        "nino: wk 583920 c",
        "Nino: Ep 73 19 04 a",
    ),
    false_examples=(
        "nino: tn 31 26 48 a",  # TN is never allocated, in any case
        "nino: wk 583920 e",  # the suffix is A-D
    ),
)

UK_NHS = Rule(
    type="uk_nhs_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[0-9]{3}(?: [0-9]{3} [0-9]{4}|-[0-9]{3}-[0-9]{4}|[0-9]{7}))"
    + NUMBER_AFTER,
    validate=validators.uk_nhs,
    score=_keyword_or(None),
    normalise=_digits,
    keywords=joined(
        "nhs",
        "nhs number",
        "nhs no",
        "nhs#",
        "national health service",
        "national health service number",
        "health services authority",
        "health authority",
        "patient id",
        "patient identification",
        "patient no",
        "patient number",
        "date of birth",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(10, 12),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "NHS number 943 476 5919",  # the number NHS Digital's documentation uses
        "patient no: 751-362-7010",
        "nhsnumber=5194893949",
    ),
    false_examples=(
        "943 476 5919",  # no keyword
        "NHS number 943 476 5918",  # check digit
        "NHS number 111 111 1111",
        "nhs, call 020 7946 0958",  # a London phone number under a phone label
    ),
)

# --- Canada and Australia -----------------------------------------------------------------

CANADA_SIN = Rule(
    type="canada_social_insurance_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[0-9]{3}(?: [0-9]{3} [0-9]{3}|-[0-9]{3}-[0-9]{3}|[0-9]{6}))"
    + NUMBER_AFTER,
    validate=validators.canada_sin,
    # Purview: formatted with a keyword 85, unformatted with a keyword 75.
    score=lambda evidence: (85 if _formatted(evidence) else 75) if evidence.keyword else None,
    normalise=_digits,
    keywords=joined(
        "sin",
        "sin#",
        "sin no",
        "sin number",
        "social insurance",
        "social insurance number",
        "social insurance no",
        "numero d'assurance sociale",
        "numero d'assurance social",
        "numéro d'assurance sociale",
        "numéro d'assurance social",
        "carte d'assurance sociale",
        "assurance sociale",
        "national identification number",
        "national id",
        "soc ins",
    ),
    # French for SIN; in capitals only, as "nas" is a Portuguese word ("nas contas").
    cased_keywords=("NAS",),
    requires_keyword=True,
    numeric=True,
    number_length=(9, 11),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "SIN: 590 668 828",
        "social insurance number 738-560-739",
        "sin#381953918",
        "mon NAS: 419 487 574",
        "Numéro d\u2019assurance sociale : 565-632-122",  # the apostrophe mail editors type
    ),
    false_examples=(
        "SIN 046 454 286",  # Service Canada's example: Luhn-valid, but 0 is never issued
        "SIN 590 668 829",  # Luhn
        "590 668 828",  # no keyword
        "SIN 812 345 676",  # Luhn-valid, but 8 is not issued
        "nas contas 430 792 440",  # Portuguese "nas", not the French NAS
    ),
)

AUSTRALIA_TFN = Rule(
    type="australia_tax_file_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[0-9]{3}(?: [0-9]{3} [0-9]{2,3}|-[0-9]{3}-[0-9]{2,3}|[0-9]{5,6}))"
    + NUMBER_AFTER,
    validate=validators.australia_tfn,
    score=_keyword_or(None),
    normalise=_digits,
    keywords=joined(
        "tax file number",
        "tax file no",
        "tfn",
        "tfn#",
        "individual tax return",
        "withholding tax",
        "marginal tax rate",
        "tax file",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(8, 11),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "TFN 123 456 782",  # the ATO's worked example of the check
        "tax file number: 182889837",
        "tfn 389 650 13",  # an older eight-digit number
    ),
    false_examples=("TFN 123 456 781", "123456782", "TFN 111 111 111"),
)

AUSTRALIA_MEDICARE = Rule(
    type="australia_medicare_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[2-6][0-9]{3}(?: [0-9]{5} [0-9](?: [1-9])?|-[0-9]{5}-[0-9]|[0-9]{6}[1-9]?))"
    + NUMBER_AFTER,
    validate=validators.australia_medicare,
    score=_keyword_or(None),
    normalise=lambda value: _digits(value)[:10],  # the individual reference is not the card
    keywords=joined(
        "medicare",
        "medicare number",
        "medicare no",
        "medicare card",
        "medicare card number",
        "medicare card no",
        "medicare payments",
        "department of human services",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(10, 14),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "Medicare card number 2123 45670 1",
        "medicare: 3994461352",
        "Medicare no. 2278 04658 8 2",  # with the individual reference number
    ),
    false_examples=(
        "Medicare card number 2123 45671 1",  # the ninth digit is the check
        "Medicare 7123 45670 1",  # cards start with 2-6
        "2123 45670 1",
    ),
)

# --- India --------------------------------------------------------------------------------

INDIA_AADHAAR = Rule(
    type="india_aadhaar_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>[2-9][0-9]{3}(?: [0-9]{4} [0-9]{4}|-[0-9]{4}-[0-9]{4}|[0-9]{8}))"
    + NUMBER_AFTER,
    validate=validators.india_aadhaar,
    # Purview: 85 with a keyword; printed in groups of four, 75 without one.
    score=lambda evidence: 85 if evidence.keyword else (75 if _formatted(evidence) else None),
    normalise=_digits,
    keywords=joined(
        "aadhaar",
        "aadhar",
        "aadhaar number",
        "aadhaar no",
        "aadhaar card",
        "aadhaar card number",
        "aadhar card",
        "aadhar card number",
        "aadhar number",
        "uid",
        "uidai",
        "unique identification",
    ),
    numeric=True,
    number_length=(12, 14),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "Aadhaar 2345 6789 0124",
        "aadhar card number: 961514136334",
        "5701 0875 2623 is on the KYC form",
    ),
    false_examples=(
        "Aadhaar 2345 6789 0123",  # Verhoeff
        "Aadhaar 1234 5678 9012",  # never starts with 0 or 1
        "570108752623",  # unformatted, no keyword
        "order 5701 0875 2623",
        # Digits of an IBAN (here with a wrong check), not an Aadhaar number read out of them
        "AL47 6166 3049 4032 6991 0237 4095",
    ),
)

INDIA_PAN = Rule(
    type="india_permanent_account_number",
    pattern=r"(?<![A-Za-z0-9])(?P<v>[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z])(?![A-Za-z0-9])",
    validate=validators.india_pan,
    score=_keyword_or(75),
    keywords=joined(
        "pan",
        "pan no",
        "pan number",
        "pan card",
        "permanent account number",
        "permanent account no",
        "income tax",
        "income tax department",
    ),
    true_examples=(
        "PAN: AAAPL1234C",  # the layout the Income Tax Department illustrates
        "permanent account number BNZPM2501F",
        "pancard=AFZPK7190K",
    ),
    false_examples=(
        "PAN AAAXL1234C",  # X is no holder kind
        "PAN AAAPL0000C",
        "ABCDE1234",
    ),
)

# --- United States: ITIN ------------------------------------------------------------------


def _itin_score(evidence: Evidence) -> int | None:
    formatted = _formatted(evidence)
    if evidence.keyword:
        return 85 if formatted else 75
    return 65 if formatted else None


US_ITIN = Rule(
    type="us_individual_taxpayer_identification_number",
    pattern=NUMBER_BEFORE
    + r"(?P<v>9[0-9]{2}(?:-[0-9]{2}-[0-9]{4}| [0-9]{2} [0-9]{4}|[0-9]{6}))"
    + NUMBER_AFTER,
    validate=validators.us_itin,
    score=_itin_score,
    normalise=_digits,
    keywords=joined(
        "itin",
        "itins",
        "itin#",
        "i.t.i.n.",
        "taxpayer",
        "tax payer",
        "taxpayer id",
        "taxpayer identification",
        "tax id",
        "tax identification",
        "tax identification number",
        "tin",
        "individual taxpayer",
        "w-7",
        "w7",
    ),
    numeric=True,
    number_length=(9, 11),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "ITIN: 912-70-1234",
        "taxpayer identification number 987 94 5500",
        "itin 950881234",
        "W-7 approved, number 923-65-4321",
        "923-65-4321",  # formatted, no keyword: 65
    ),
    false_examples=(
        "ITIN 912-93-1234",  # group 93 is not an ITIN group
        "ITIN 812-70-1234",  # starts with 9
        "950881234",  # unformatted without a keyword
        "SSN 950-88-1234",  # labelled as another type
        "ITIN 912-70-0000",
    ),
)

# --- European Union -----------------------------------------------------------------------

FRANCE_NIR = Rule(
    type="france_social_security_number",
    # INSEE: sex, year, month, department (2A/2B for Corsica), commune, order, key.
    # (A standalone number: Corsica's letter comes after at least six digits and spaces.)
    pattern=NUMBER_BEFORE
    + r"(?P<v>[1278] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2})"
    + NUMBER_AFTER,
    numeric=True,
    # The shortest number run a match starts (`185052A...`: the letter ends the run).
    number_length=(6, 21),
    validate=validators.france_nir,
    score=_keyword_or(75),
    normalise=_compact,
    keywords=joined(
        "insee",
        "nir",
        "securite sociale",
        "sécurité sociale",
        "numero de securite sociale",
        "numéro de sécurité sociale",
        "numero de secu",
        "numéro de sécu",
        "code secu",
        "carte vitale",
        "social security number",
        "national id",
        "numero d'identification nationale",
    ),
    true_examples=(
        "numéro de sécurité sociale : 1 84 12 76 451 089 46",
        "NIR 261111355760483",
        "carte vitale 1 85 05 2A 123 456 33",  # Corsica: 2A counts as 19 in the key
    ),
    false_examples=(
        "NIR 1 84 12 76 451 089 47",  # key
        "NIR 3 84 12 76 451 089 46",  # sex digit
        "1 84 13 76 451 089 46",  # month 13
        "NIR 184457645108989",  # month 45: INSEE uses 30-42 and 50-99, never 43-49
    ),
)

SPAIN_DNI = Rule(
    type="spain_dni",
    # Eight digits and the check letter; an NIE is X, Y or Z, seven digits and the letter.
    # The check letter is not case-sensitive (Purview).
    pattern=NUMBER_BEFORE + r"(?P<v>(?:[0-9]{8}|[XYZ][0-9]{7})[ \-]?[A-Za-z])" + NUMBER_AFTER,
    numeric=True,
    number_length=(8, 10),  # the run of digits ends before the letter
    validate=validators.spain_dni,
    score=_keyword_or(75),
    normalise=_compact,
    keywords=joined(
        "dni",
        "dni#",
        "dni no",
        "documento nacional de identidad",
        "numero de identidad",
        "número de identidad",
        "nie",
        "nif",
        "numero de identificacion",
        "número de identificación",
        "identidad",
    ),
    true_examples=(
        "DNI 12345678Z",  # the check letter of the Ministry's 12345678 example
        "documento nacional de identidad: 96488285-L",
        "NIE Y0265432A",
        "dni 12345678-z",
    ),
    false_examples=("DNI 12345678A", "NIE W0265432A", "ref 00000000T", "DNI 12345678-a"),
)

ITALY_FISCAL_CODE = Rule(
    type="italy_fiscal_code",
    pattern=r"(?<![A-Za-z0-9])(?P<v>[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}"
    r"[A-Z][0-9LMNPQRSTUV]{3}[A-Z])(?![A-Za-z0-9])",
    validate=validators.italy_fiscal_code,
    score=_keyword_or(75),
    keywords=joined(
        "codice fiscale",
        "codice fiscale dei contribuenti",
        "codice fiscale di identificazione",
        "numero di codice fiscale",
        "fiscal code",
        "tax code",
        "italian fiscal code",
        "cf",
        "c.f.",
    ),
    true_examples=(
        "codice fiscale RSSMRA85T10A562S",
        "C.F. MRTMTT25D09F205Z",
        "MRTMTT25D09F20RU",  # omocodia: digits replaced by letters, check letter recomputed
        "codice fiscale RSSMRA85T50A562W",  # a woman: day + 40
    ),
    false_examples=(
        "codice fiscale RSSMRA85T10A562T",
        "RSSMRA85Z10A562S",
        "ABCDEF12G34H567I",
        "codice fiscale RSSMRA85T35A562G",  # day 35 (the check letter is right)
        "codice fiscale RSSMRA85B30A562G",  # 30 February
    ),
)

NETHERLANDS_BSN = Rule(
    type="netherlands_bsn",
    pattern=r"(?<![0-9A-Za-z.\-])(?P<v>[0-9]{4}[. ][0-9]{2}[. ][0-9]{3}|[0-9]{3}[. ][0-9]{3}"
    r"[. ][0-9]{3}|[0-9]{8,9})(?![0-9A-Za-z]|[.\-][0-9])",
    validate=validators.netherlands_bsn,
    score=_keyword_or(None),
    normalise=lambda value: _digits(value).rjust(9, "0"),
    keywords=joined(
        "bsn",
        "bsn#",
        "bsn nummer",
        "burgerservicenummer",
        "citizen service number",
        "sofinummer",
        "sofi nummer",
        "persoonsnummer",
        "persoonsgebonden nummer",
    ),
    requires_keyword=True,
    labelled_elsewhere_excludes=True,
    true_examples=(
        "BSN 111222333",  # the number the Dutch government's test documentation uses
        "burgerservicenummer: 1234.56.782",
        "bsn 321 266 869",
    ),
    false_examples=("BSN 111222334", "123456782", "BSN 000000000"),
)

POLAND_PESEL = Rule(
    type="poland_pesel",
    pattern=NUMBER_BEFORE + r"(?P<v>[0-9]{11})" + NUMBER_AFTER,
    validate=validators.poland_pesel,
    score=_keyword_or(None),
    normalise=_digits,
    keywords=joined(
        "pesel",
        "pesel#",
        "nr pesel",
        "numer pesel",
        "numer ewidencyjny",
        "dowod osobisty",
        "dowód osobisty",
        "numer identyfikacyjny",
        "tozsamosci",
        "tożsamości",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(11, 11),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "PESEL 44051401359",  # the specimen on the Polish identity documents
        "numer PESEL: 11250587713",  # month 25: May of a year in the 2000s
        "Dowód osobisty 44051401359",
    ),
    false_examples=("PESEL 44051401358", "PESEL 44053401350", "44051401359"),
)

SWEDEN_PERSONNUMMER = Rule(
    type="sweden_personal_identity_number",
    # The separator is `-`, or `+` from the year a person turns 100 (Skatteverket).
    pattern=NUMBER_BEFORE + r"(?P<v>(?:1[89]|20)?[0-9]{6}[\-+]?[0-9]{4})" + NUMBER_AFTER,
    validate=validators.sweden_personnummer,
    score=_keyword_or(None),
    normalise=lambda value: _digits(value)[-10:],
    keywords=joined(
        "personnummer",
        "personnumret",
        "personnr",
        "person nummer",
        "personal identity number",
        "personal id number",
        "identitetsnummer",
        "samordningsnummer",
        "coordination number",
        "id-nummer",
        "pnr",
    ),
    requires_keyword=True,
    numeric=True,
    number_length=(6, 13),  # a `+` ends the run of digits a match starts
    labelled_elsewhere_excludes=True,
    true_examples=(
        "personnummer 811228-9874",
        "Personnummer: 19811228-9874",
        "samordningsnummer 701063-2391",  # day + 60
        "personnummer 121212+1212",  # born 1912: `+` from the year of the 100th birthday
    ),
    false_examples=(
        "personnummer 811228-9875",
        "personnummer 811328-9874",
        "811228-9874",
        "personnummer 190002291235",  # 29 February 1900 never was (the Luhn digit is right)
    ),
)

_CPF_KEYWORDS = joined(
    "cpf",
    "cpf#",
    "cpf no",
    "numero do cpf",
    "número do cpf",
    "cadastro de pessoas fisicas",
    "cadastro de pessoas físicas",
    "cadastro de pessoa fisica",
    "receita federal",
    "inscricao",
    "inscrição",
)

BRAZIL_CPF = Rule(
    type="brazil_cpf",
    # The printed form, 000.000.000-00: Purview rates it 85 with a keyword, 75 alone.
    pattern=r"(?<![0-9A-Za-z.\-/])(?P<v>[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2})"
    r"(?![0-9A-Za-z]|[.\-/][0-9])",
    validate=validators.brazil_cpf,
    score=_keyword_or(75),
    normalise=_digits,
    keywords=_CPF_KEYWORDS,
    true_examples=("CPF 111.444.777-35", "943.030.494-17 (titular)"),
    false_examples=("CPF 111.444.777-36", "CPF 111.111.111-11"),
)

BRAZIL_CPF_DIGITS = Rule(
    type="brazil_cpf",
    # Eleven digits (or nine, a dash and two): only with a keyword.
    pattern=NUMBER_BEFORE + r"(?P<v>[0-9]{9}-?[0-9]{2})" + NUMBER_AFTER,
    validate=validators.brazil_cpf,
    score=_keyword_or(None),
    normalise=_digits,
    keywords=_CPF_KEYWORDS,
    requires_keyword=True,
    numeric=True,
    number_length=(11, 12),
    labelled_elsewhere_excludes=True,
    true_examples=(
        "número do CPF: 08303454935",
        "cpf 694168370-83",
        "Cadastro de Pessoas Físicas: 08303454935",
        "INSCRIÇÃO 08303454935",
    ),
    false_examples=("94303049417", "CPF 94303049418"),
)

GERMANY_ID_CARD = Rule(
    type="germany_identity_card_number",
    # Not case-sensitive; the number may be followed by the nationality, D (Purview).
    pattern=r"(?<![A-Za-z0-9])(?P<v>[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{8}[0-9]?|[0-9]{10})"
    r"(?:(?<=[0-9])D)?(?![A-Za-z0-9])",
    ignore_case=True,
    longest=11,
    validate=validators.germany_identity_card,
    # Printed without its check digit a number has no check at all: medium, not high.
    score=lambda evidence: (85 if len(evidence.value) == 10 else 75) if evidence.keyword else None,
    normalise=lambda value: value.upper()[:9],  # the check digit is printed only sometimes
    keywords=joined(
        "ausweis",
        "ausweisnummer",
        "ausweis nr",
        "ausweis-nr",
        "personalausweis",
        "personalausweisnummer",
        "personalausweis nr",
        "identity card",
        "identity card number",
        "id card",
        "idcard",
        "perso",
        "identifizierungsnummer",
    ),
    requires_keyword=True,
    labelled_elsewhere_excludes=True,
    true_examples=(
        "Personalausweis T220001293",  # the specimen card, with its check digit
        "Ausweisnummer: L01X00T47",  # printed without the check digit
        "identity card FK7JJ1YY47",
        "Personalausweis T220001293D",  # the machine-readable line adds the nationality
        "personalausweis t220001293",
    ),
    false_examples=(
        "Personalausweis T220001294",  # check digit
        "Personalausweis A220001293",  # A is not in the card alphabet
        "T220001293",
        "passport # G53834472, Ausweisnummer below",  # labelled as a passport
    ),
)

RULES: tuple[Rule, ...] = (
    UK_NINO,
    UK_NINO_ANY_CASE,
    ITALY_FISCAL_CODE,
    INDIA_PAN,
    FRANCE_NIR,
    SPAIN_DNI,
    BRAZIL_CPF,
    GERMANY_ID_CARD,
    BRAZIL_CPF_DIGITS,
    UK_NHS,
    CANADA_SIN,
    AUSTRALIA_TFN,
    AUSTRALIA_MEDICARE,
    INDIA_AADHAAR,
    US_ITIN,
    NETHERLANDS_BSN,
    POLAND_PESEL,
    SWEDEN_PERSONNUMMER,
)
