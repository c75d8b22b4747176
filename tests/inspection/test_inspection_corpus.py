"""The simulator's bodies: deterministic, labeled truthfully, mentions rendered."""

from __future__ import annotations

import random

from graphtap.inspection import Inspector
from graphtap.simulation import values
from graphtap.simulation.corpus import GeneratedBody, labeled_corpus, teams_message_html


def test_teams_bodies_are_deterministic_for_a_seed() -> None:
    first = [teams_message_html(random.Random(7), sensitive=True) for _ in range(3)]
    again = [teams_message_html(random.Random(7), sensitive=True) for _ in range(3)]
    assert first == again
    assert isinstance(first[0], GeneratedBody)


def test_mentions_are_rendered_as_at_tags() -> None:
    body = teams_message_html(random.Random(1), sensitive=False, mentions=["Adele Vance", "Lee Gu"])
    assert '<at id="0">Adele Vance</at>' in body.html
    assert '<at id="1">Lee Gu</at>' in body.html


def test_planted_types_are_found_and_clean_bodies_carry_no_true_value(
    inspector: Inspector,
) -> None:
    rng = random.Random(3)
    for _ in range(200):
        body = teams_message_html(rng, sensitive=True)
        assert body.planted
        assert set(body.planted) <= set(values.SENSITIVE_TYPES)
        assert set(body.planted) <= {f.type for f in inspector.inspect_html(body.html).findings}
    for _ in range(200):
        assert teams_message_html(rng, sensitive=False).planted == ()


def test_labeled_corpus_plants_every_type_in_turn() -> None:
    corpus = list(labeled_corpus(seed=5, count=2000))
    assert len({m.id for m in corpus}) == 2000
    planted = {p.type for m in corpus for p in m.planted}
    assert planted == set(values.SENSITIVE_TYPES)
    assert any(not m.planted for m in corpus)


def test_decoys_do_not_pass_as_true_values() -> None:
    from graphtap.inspection import validators

    rng = random.Random(9)
    for _ in range(300):
        assert not validators.iban(values.bad_iban(rng).removeprefix("IBAN "))
        assert not validators.ssn(values.invalid_ssn(rng).removeprefix("SSN "))
        assert not validators.aba_routing(values.bad_aba(rng).removeprefix("routing number "))
        token = values.bad_github_token(rng).split()[2]
        assert not validators.github_token(token)
