"""Canary exposure and regurgitation (Carlini et al. 2019) against ground truth.

* the trie enumeration scores every secret exactly as a full forward pass over each canary
  line does, and ranks each canary as sorting those brute-force scores does;
* a model trained on nothing but one canary ranks it first (exposure ``log2 |R|``) and writes
  it out verbatim; an untrained model gives randomly drawn secrets the random baseline;
* the skew-normal extrapolation agrees with the exact exposure where the fit is in its bulk;
* beam search as wide as the vocabulary over two tokens finds the exact best continuation.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest
import torch

from mlwarden.attacks.privacy.memorization import (
    RANDOM_BASELINE_BITS,
    Canary,
    CanarySpace,
    MemorizationAttack,
    beam_decode,
    candidate_log_perplexities,
    exposure_from_rank,
    extrapolated_exposure,
    greedy_decode,
    plant_canaries,
    rank_of,
)
from mlwarden.errors import AttackError, DataError
from mlwarden.models.text_lm import (
    BOS,
    CharGRU,
    CharLanguageModel,
    CharVocabulary,
    fit_language_model,
)

CORPUS = [
    f"the {animal} {verb} over the {thing} at {hour} o'clock"
    for animal, verb, thing, hour in product(
        ("fox", "dog", "cat", "owl"),
        ("jumps", "walks", "looks"),
        ("fence", "river", "wall"),
        ("one", "two", "six"),
    )
]


@pytest.fixture(scope="module")
def trained() -> tuple[CharLanguageModel, CanarySpace, list[Canary]]:
    """A small GRU trained on the corpus with 4-digit canaries repeated 0, 1, 4 and 32 times."""
    space = CanarySpace(length=4)
    lines, canaries = plant_canaries(CORPUS, space, (0, 1, 4, 32), per_count=2, seed=3)
    model = fit_language_model(lines, hidden_size=48, epochs=12, batch_size=16, seed=0)
    return model, space, canaries


def test_trie_scores_equal_full_forward_scores(trained: tuple) -> None:
    model, _, _ = trained
    small = CanarySpace(prefix="my account number is ", alphabet="0123", length=3)
    texts = [small.secret_text(small.secret_at(i)) for i in range(small.size)]
    brute = -model.continuation_log_prob(small.prefix, texts) / math.log(2)
    trie = candidate_log_perplexities(model, small, max_batch=7)  # forces chunking
    np.testing.assert_allclose(trie, brute, atol=1e-4)
    order = np.argsort(brute, kind="stable")
    for index in (0, 17, 63):
        assert rank_of(trie, index) == 1 + int((brute < brute[index]).sum())
        assert rank_of(brute, int(order[0])) == 1


def test_trie_without_separator_matches_brute_force(trained: tuple) -> None:
    model, _, _ = trained
    space = CanarySpace(prefix="my account number is ", alphabet="013", length=4, separator="")
    texts = [space.secret_text(space.secret_at(i)) for i in range(space.size)]
    brute = -model.continuation_log_prob(space.prefix, texts) / math.log(2)
    np.testing.assert_allclose(candidate_log_perplexities(model, space), brute, atol=1e-4)


def test_exposure_is_log2_size_minus_log2_rank() -> None:
    assert exposure_from_rank(1, 1024) == 10.0
    assert exposure_from_rank(1024, 1024) == 0.0
    assert exposure_from_rank(8, 1024) == 7.0
    with pytest.raises(AttackError, match="rank"):
        exposure_from_rank(0, 10)


def test_model_trained_only_on_the_canary_has_max_exposure_and_regurgitates() -> None:
    space = CanarySpace(length=4)
    secret = "4819"
    model = fit_language_model(
        [space.render(secret)] * 32,
        vocab=CharVocabulary.from_texts([space.prefix, space.alphabet]),
        hidden_size=32,
        epochs=15,
        batch_size=8,
        seed=1,
    )
    result = MemorizationAttack(method="exact", beam_width=4).run(
        model, space, [Canary(secret, 32)]
    )
    (canary,) = result.canaries
    assert canary.rank == 1
    assert canary.exposure == pytest.approx(space.bits)
    assert canary.greedy_regurgitated and canary.beam_regurgitated
    assert canary.greedy == space.secret_text(secret)


def test_untrained_model_gives_random_secrets_the_random_baseline() -> None:
    space = CanarySpace(length=4)
    vocab = CharVocabulary.from_texts([space.prefix, space.alphabet])
    torch.manual_seed(0)
    model = CharLanguageModel(CharGRU(vocab.size, hidden_size=32), vocab)
    canaries = [Canary(s, 0) for s in space.random_secrets(80, seed=5)]
    result = MemorizationAttack(method="exact", beam_width=2).run(model, space, canaries)
    exposures = [c.exposure for c in result.canaries]
    # -log2 of a uniform rank: mean 1/ln 2, standard deviation 1/ln 2 (so ±0.16 for 80)
    assert np.mean(exposures) == pytest.approx(RANDOM_BASELINE_BITS, abs=0.5)
    assert not result.regurgitated()


def test_exposure_grows_with_repetitions_and_the_most_repeated_is_regurgitated(
    trained: tuple,
) -> None:
    model, space, canaries = trained
    result = MemorizationAttack(method="exact", beam_width=4).run(model, space, canaries)
    by_count = result.exposure_by_repetitions()
    assert by_count[32] > by_count[4] > by_count[0]
    assert by_count[32] >= space.bits - 1  # rank 1 or 2 of 10,000
    # one prefix has one greedy continuation: the top-ranked secret, a 32-times canary
    (written,) = [c for c in result.canaries if c.greedy_regurgitated]
    assert written.rank == 1 and written.repetitions == 32
    assert not any(c.beam_regurgitated for c in result.canaries if c.repetitions == 0)


def test_extrapolated_exposure_agrees_with_exact_in_the_bulk(trained: tuple) -> None:
    model, space, _ = trained
    controls = [Canary(s, 0) for s in space.random_secrets(20, seed=11)]
    result = MemorizationAttack(method="both", n_samples=4000, beam_width=1, seed=2).run(
        model, space, controls
    )
    diffs = [
        abs(c.exposure - c.exposure_extrapolated)
        for c in result.canaries
        if c.exposure is not None and c.exposure_extrapolated is not None and c.exposure < 6
    ]
    assert len(diffs) >= 15
    assert max(diffs) < 1.0


def test_extrapolation_is_capped_at_the_space_size() -> None:
    sample = np.random.default_rng(0).normal(30.0, 2.0, size=500)
    (value,) = extrapolated_exposure(np.array([0.0]), sample, 1000)
    assert value == pytest.approx(math.log2(1000))


def test_wide_beam_finds_the_exact_best_continuation(trained: tuple) -> None:
    model, _, _ = trained
    prefix = "the fox "
    ids, score = beam_decode(model, prefix, 2, beam_width=model.vocab.size)
    prefix_ids = [BOS, *model.token_ids(prefix, "prefix")]
    vocab = model.vocab.size
    pairs = torch.tensor([[a, b] for a in range(vocab) for b in range(vocab)])
    tokens = torch.cat([torch.tensor(prefix_ids).repeat(len(pairs), 1), pairs], dim=1)
    with torch.no_grad():
        logits, _ = model.network(tokens[:, :-1])
    logp = torch.log_softmax(logits.double(), -1)[:, -2:]
    totals = logp.gather(2, pairs.unsqueeze(2)).squeeze(2).sum(1)
    best = int(torch.argmax(totals))
    assert ids == pairs[best].tolist()
    assert score == pytest.approx(float(totals[best]), abs=1e-5)


def test_beam_search_scores_at_least_greedy(trained: tuple) -> None:
    model, space, _ = trained
    greedy = greedy_decode(model, space.prefix, 7)
    _, beam_score = beam_decode(model, space.prefix, 7, beam_width=5)
    greedy_score = model.continuation_log_prob(space.prefix, [model.decode(greedy)])[0]
    assert beam_score >= greedy_score - 1e-6  # float32 network, float64 sums


def test_plant_canaries_inserts_each_the_stated_number_of_times() -> None:
    space = CanarySpace(length=5)
    original = list(CORPUS)
    lines, canaries = plant_canaries(CORPUS, space, (0, 1, 4, 16), seed=0)
    assert original == CORPUS
    assert len(lines) == len(CORPUS) + 21
    for canary in canaries:
        assert lines.count(space.render(canary.secret)) == canary.repetitions
    assert len({c.secret for c in canaries}) == 4
    again, _ = plant_canaries(CORPUS, space, (0, 1, 4, 16), seed=0)
    other, _ = plant_canaries(CORPUS, space, (0, 1, 4, 16), seed=1)
    assert again == lines and other != lines


def test_canary_space_index_round_trips_and_validates() -> None:
    space = CanarySpace()
    assert space.size == 10**6
    assert space.render("481927") == "my account number is 4 8 1 9 2 7"
    for index in (0, 1, 481927, 999999):
        assert space.index(space.secret_at(index)) == index
    assert space.secret_at(481927) == "481927"
    with pytest.raises(AttackError, match="not 6 symbols"):
        space.index("48192x")
    with pytest.raises(AttackError, match="separator"):
        CanarySpace(separator="1")
    with pytest.raises(AttackError, match="two distinct"):
        CanarySpace(alphabet="00")


def test_exact_method_refuses_a_space_too_large_to_enumerate(trained: tuple) -> None:
    model, _, _ = trained
    space = CanarySpace(length=8)
    with pytest.raises(AttackError, match="extrapolated"):
        MemorizationAttack(max_exact=10**6).run(model, space, [Canary("12345678", 1)])


def test_prefix_outside_the_vocabulary_is_a_data_error(trained: tuple) -> None:
    model, _, _ = trained
    space = CanarySpace(prefix="MY PIN IS ", length=2)
    with pytest.raises(DataError, match="vocabulary"):
        MemorizationAttack().run(model, space, [Canary("12", 1)])
