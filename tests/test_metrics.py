"""Metric values checked by hand against the SQuAD, LongBench and HotpotQA scoring rules."""

from __future__ import annotations

import pytest

from lloco_core.qa.metrics import (
    METRICS,
    ROUGE_LIBRARY,
    accuracy,
    choice_accuracy,
    exact_match,
    extract_choice,
    hotpot_em,
    hotpot_f1,
    normalize_answer,
    qa_f1,
    rouge_l,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Cat, sat!", "cat sat"),
        ("  an   apple a day  ", "apple day"),
        ("Theory of a theme", "theory of theme"),  # only whole-word articles go
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer_squad_rules(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def test_qa_f1_hand_computed() -> None:
    # "cat sat" vs "cat sat on mat": 2 common, P = 2/2, R = 2/4, F1 = 2*1*0.5/1.5 = 2/3
    assert qa_f1("the cat sat", ["a cat sat on the mat"]) == pytest.approx(2 / 3)
    # repeated tokens count by multiplicity: "dog dog" vs "dog": P = 1/2, R = 1, F1 = 2/3
    assert qa_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
    assert qa_f1("The Cat!", ["cat"]) == 1.0
    assert qa_f1("bird", ["cat"]) == 0.0


def test_multiple_references_take_the_max() -> None:
    refs = ["a dog", "cat sat on the mat", "the cat sat"]
    assert qa_f1("the cat sat", refs) == 1.0
    assert exact_match("Cat sat.", refs) == 1.0
    assert rouge_l("the cat sat", ["completely different", "the cat sat"]) == 1.0


def test_exact_match_uses_normalisation() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0


def test_hotpot_yes_no_rule() -> None:
    # plain token F1 gives "yes" partial credit against "yes it is": P=1, R=1/3, F1=0.5
    assert qa_f1("yes", ["yes it is"]) == pytest.approx(0.5)
    assert hotpot_f1("yes", ["yes it is"]) == 0.0
    assert hotpot_f1("it is yes", ["yes"]) == 0.0  # reference is special, prediction differs
    assert hotpot_f1("Yes.", ["yes"]) == 1.0
    assert hotpot_f1("no", ["noanswer"]) == 0.0
    # outside the special answers it is ordinary token F1
    assert hotpot_f1("the cat sat", ["a cat sat on the mat"]) == pytest.approx(2 / 3)
    assert hotpot_em("Yes", ["yes"]) == 1.0
    assert hotpot_em("yes it is", ["yes"]) == 0.0


def test_rouge_l_hand_computed() -> None:
    # LCS of [the cat sat on the mat] and [the cat is on the mat] is "the cat on the mat" (5 of 6)
    assert rouge_l("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx(5 / 6)
    # Porter stemming: cats->cat, running->run
    assert rouge_l("cats running", ["cat run"]) == 1.0
    assert "rouge-score" in ROUGE_LIBRARY and "Porter" in ROUGE_LIBRARY


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("(B)", "B"),
        ("B", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("(c) the tower falls", "C"),
        ("B) The tower falls", "B"),
        ("D: because of the storm", "D"),
        ("The answer is C", "C"),
        ("The answer is C because the storm came.", "C"),
        ("answer: (d)", "D"),
        ("Answer: A. The tower", "A"),
        ("The correct option is (B).", "B"),
        ("B. Paris", "B"),  # the official QuALITY answer target: "<letter>. <option text>"
        ("A. a tower by the sea", "A"),
        ("C. The answer is in the letter", "C"),
        ("I think (C) is right, not (A).", "C"),
        ("A cat sat on the mat", None),  # an article, not option A
        ("the answer is a tower", None),
        ("none of these", None),
    ],
)
def test_extract_choice(prediction: str, letter: str | None) -> None:
    assert extract_choice(prediction) == letter


def test_choice_accuracy() -> None:
    assert choice_accuracy("The answer is (C).", "C") == 1.0
    assert choice_accuracy("The answer is (C).", "c") == 1.0
    assert choice_accuracy("B", "C") == 0.0
    assert choice_accuracy("I cannot tell", "A") == 0.0
    assert accuracy("(A)", ["A"]) == 1.0
    assert accuracy("B. Paris", ["B"]) == 1.0 and accuracy("B. Paris", ["C"]) == 0.0
    with pytest.raises(ValueError, match="A-D"):
        choice_accuracy("A", "E")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_empty_prediction_is_zero(name: str) -> None:
    reference = "A" if name == "accuracy" else "the cat sat"
    assert METRICS[name]("", [reference]) == 0.0
    assert METRICS[name]("   ", [reference]) == 0.0


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_rejects_empty_references(name: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        METRICS[name]("the cat", [])
    with pytest.raises(ValueError, match="list"):
        METRICS[name]("the cat", "the cat")  # type: ignore[arg-type]


def test_registry_names() -> None:
    assert set(METRICS) == {"accuracy", "qa_f1", "hotpot_f1", "hotpot_em", "exact_match", "rouge_l"}
