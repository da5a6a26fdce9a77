"""The synonym-substitution attack: budget and lexicon invariants, ground truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.attacks import TextSynonymAttack, attack_names, get_attack
from mlwarden.attacks.evasion.text_synonym import TextAttackResult, word_budget
from mlwarden.data.text import STOP_WORDS, SynonymTable, TextDataset, load_synonyms, tokenize
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier
from mlwarden.models.text import SklearnTextClassifier, TorchTextClassifier

from .toy import TOY_TABLE, TOY_TEXT, WordWeights


def check_invariants(
    originals: list[str], result: TextAttackResult, table: SynonymTable, eps: float
) -> None:
    """Every output differs from its input only in budgeted substitutions from ``table``."""
    for text, adv, subs in zip(originals, result.x_adv, result.substitutions, strict=True):
        before, after = tokenize(text), tokenize(str(adv))
        assert after.gaps == before.gaps  # punctuation and spacing untouched
        changed = [
            i for i, (a, b) in enumerate(zip(before.words, after.words, strict=True)) if a != b
        ]
        assert changed == [s.position for s in subs]
        assert len(changed) <= word_budget(len(before), eps)
        for s in subs:
            assert before.words[s.position] == s.original
            assert after.words[s.position] == s.replacement
            assert table.is_synonym(s.original, s.replacement)
            assert s.original.lower() not in STOP_WORDS
            assert not before.is_named_entity(s.position)


def test_text_attack_is_registered_for_the_text_modality_only() -> None:
    assert attack_names("text") == ["text-synonym"]
    assert "text-synonym" not in attack_names()
    assert get_attack("text-synonym") is TextSynonymAttack


def test_attack_finds_the_one_substitution_that_flips_a_known_model() -> None:
    model = WordWeights({"fight": 2.0, "battle": -3.0, "struggle": -0.5, "potent": -0.1})
    assert model.predict([TOY_TEXT])[0] == 1
    model.seen = 0

    attack = TextSynonymAttack(synonyms=TOY_TABLE, min_batch_texts=1)
    result = attack.generate(model, [TOY_TEXT], np.array([1]))

    assert result.success.tolist() == [True]
    assert result.x_adv[0] == TOY_TEXT.replace("fight", "battle")
    assert result.changed_share.tolist() == [1 / 20]
    # 1 clean query, 3 deletions (fight, strong, nation), 3 candidates at "fight" (the most
    # important word, which flips at once), 1 final prediction
    assert result.queries.tolist() == [8]
    assert model.seen == 8


def test_pooled_candidates_cost_whole_groups() -> None:
    model = WordWeights({"fight": 2.0, "battle": -3.0})
    result = TextSynonymAttack(synonyms=TOY_TABLE).generate(model, [TOY_TEXT], np.array([1]))

    # the 7 candidates of the 3 words go in one call: 1 + 3 deletions + 7 + 1 final
    assert result.queries.tolist() == [12]
    assert result.x_adv[0] == TOY_TEXT.replace("fight", "battle")


def test_attack_takes_the_best_substitutions_up_to_the_budget() -> None:
    # 40 words (a budget of 2): no single swap flips the model, and of all pairs the best
    # synonyms (struggle for fight, firm for strong) are the ones that do
    model = WordWeights({"fight": 1.5, "strong": 1.5, "struggle": -0.1, "firm": -0.2})
    text = (
        TOY_TEXT
        + " and they will keep on working every day for all of the people who live here now and then again"
    )
    assert len(tokenize(text)) == 40
    result = TextSynonymAttack(synonyms=TOY_TABLE).generate(model, [text], np.array([1]))

    assert result.success.tolist() == [True]
    assert [s.replacement for s in result.substitutions[0]] == ["struggle", "firm"]


def test_importance_search_visits_each_word_once_in_order() -> None:
    model = WordWeights({"fight": 1.5, "strong": 1.5, "struggle": -0.1, "firm": -0.2})
    text = TOY_TEXT + " " + " ".join(["and"] * 20)
    greedy = TextSynonymAttack(synonyms=TOY_TABLE).generate(model, [text], np.array([1]))
    ordered = TextSynonymAttack(synonyms=TOY_TABLE, search="importance").generate(
        model, [text], np.array([1])
    )

    assert ordered.success.tolist() == [True]
    assert ordered.x_adv[0] == greedy.x_adv[0]
    # 1 clean + 3 deletions + fight's 3 + strong's 2 candidates + 1 final; greedy re-scores
    assert ordered.queries.tolist() == [10]
    assert greedy.queries[0] > ordered.queries[0]


def test_a_budget_below_one_word_changes_nothing() -> None:
    model = WordWeights({"fight": 2.0, "battle": -3.0})
    text = "We fight for a strong nation"  # 6 words: floor(0.05 * 6) = 0
    result = TextSynonymAttack(synonyms=TOY_TABLE).generate(model, [text], np.array([1]))

    assert result.x_adv[0] == text and not result.success[0]


def test_targeted_attack_moves_towards_the_target() -> None:
    model = WordWeights({"fight": -2.0, "battle": 3.0})
    attack = TextSynonymAttack(synonyms=TOY_TABLE, targeted=True)
    result = attack.generate(model, [TOY_TEXT], np.array([0]), target=np.array([1]))

    assert result.success.tolist() == [True] and result.predictions.tolist() == [1]


@pytest.mark.parametrize("mode", ["score", "label"])
def test_real_attack_keeps_the_budget_and_draws_from_the_lexicon(
    mode: str, tfidf_model: SklearnTextClassifier, speech_sample: TextDataset
) -> None:
    result = TextSynonymAttack(mode=mode, label_trials=40).generate(
        tfidf_model, speech_sample.x, speech_sample.y
    )

    check_invariants(speech_sample.texts, result, load_synonyms(), 0.05)
    np.testing.assert_array_equal(result.predictions, tfidf_model.predict(result.x_adv))
    np.testing.assert_array_equal(result.success, result.predictions != speech_sample.y)
    assert result.success.any()


def test_attack_on_the_neural_model_keeps_the_invariants(
    embedding_model: TorchTextClassifier, speech_sample: TextDataset
) -> None:
    result = TextSynonymAttack(eps=0.1).generate(embedding_model, speech_sample.x, speech_sample.y)

    check_invariants(speech_sample.texts, result, load_synonyms(), 0.1)
    assert result.success.any()


def test_same_seed_same_result_other_seed_other_search(
    tfidf_model: SklearnTextClassifier, speech_sample: TextDataset
) -> None:
    def run(seed: int) -> TextAttackResult:
        attack = TextSynonymAttack(mode="label", label_trials=30, eps=0.1, seed=seed)
        return attack.generate(tfidf_model, speech_sample.x, speech_sample.y)

    first, again, other = run(0), run(0), run(1)

    assert first.x_adv.tolist() == again.x_adv.tolist()
    assert first.queries.tolist() == again.queries.tolist()
    assert first.substitutions != other.substitutions


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": 1.5}, "share of words"),
        ({"mode": "gradient"}, "mode must be"),
        ({"search": "beam"}, "search must be"),
        ({"max_candidates": 0}, "max_candidates must be"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, object], message: str) -> None:
    model = WordWeights({})
    with pytest.raises(AttackError, match=message):
        TextSynonymAttack(**params).generate(model, [TOY_TEXT], np.array([1]))  # type: ignore[arg-type]


def test_tensor_classifier_is_refused(tiny_tensor_classifier: Classifier) -> None:
    with pytest.raises(AttackError, match="attacks text classifiers"):
        TextSynonymAttack().generate(tiny_tensor_classifier, np.zeros((1, 4)), np.array([0]))


def test_labels_must_match_the_texts() -> None:
    with pytest.raises(AttackError, match=r"shape \(1,\)"):
        TextSynonymAttack().generate(WordWeights({}), [TOY_TEXT], np.array([1, 0]))
