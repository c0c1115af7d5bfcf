"""Answer metrics for long-context QA, matching the published scorers so numbers compare with papers.

Every metric takes one prediction and a list of references and returns the best score over the
references (as LongBench, SQuAD and HotpotQA do). An empty prediction scores 0; an empty reference
list is a caller bug and raises ``ValueError``.

ROUGE comes from Google's ``rouge-score`` package (see ``ROUGE_LIBRARY``). LongBench itself uses the
``rouge`` package on raw strings, so our qmsum ROUGE-L is close to, not identical with, LongBench's.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.metadata import version

from rouge_score import rouge_scorer

ROUGE_LIBRARY = f"rouge-score {version('rouge-score')} (Google), rougeL F-measure, Porter stemmer"
"""Name this in every report: ROUGE implementations disagree on tokenisation and stemming."""

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
_HOTPOT_SPECIAL = frozenset({"yes", "no", "noanswer"})


def normalize_answer(s: str) -> str:
    """The SQuAD v1.1 official normalisation (also LongBench's and HotpotQA's).

    Lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.
    Written out because transformers 5 no longer ships ``transformers.data.metrics.squad_metrics``.
    """
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _check(prediction: str, references: Sequence[str]) -> bool:
    """Validate the references; return False when the prediction is empty (score 0)."""
    if isinstance(references, str):
        raise ValueError("references must be a list of strings, not one string")
    if not references:
        raise ValueError("references is empty: there is nothing to score against")
    return bool(prediction and prediction.strip())


def _token_f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    """Bag-of-tokens F1, as in the SQuAD v1.1 and LongBench scorers."""
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, references: Sequence[str]) -> float:
    """Token F1 after normalisation, max over references (LongBench qasper/narrativeqa)."""
    if not _check(prediction, references):
        return 0.0
    pred = normalize_answer(prediction).split()
    return max(_token_f1(pred, normalize_answer(r).split()) for r in references)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference (SQuAD EM)."""
    if not _check(prediction, references):
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def hotpot_f1(prediction: str, references: Sequence[str]) -> float:
    """HotpotQA official answer F1: token F1, except yes/no/noanswer must match exactly.

    Without the rule, "yes" against "yes it is" would earn partial credit for a binary answer.
    """
    if not _check(prediction, references):
        return 0.0
    pred = normalize_answer(prediction)
    best = 0.0
    for ref in map(normalize_answer, references):
        if (pred in _HOTPOT_SPECIAL or ref in _HOTPOT_SPECIAL) and pred != ref:
            continue
        best = max(best, _token_f1(pred.split(), ref.split()))
    return best


def hotpot_em(prediction: str, references: Sequence[str]) -> float:
    """HotpotQA official answer EM: the same as SQuAD exact match."""
    return exact_match(prediction, references)


@lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure from ``rouge-score`` with Porter stemming, max over references."""
    if not _check(prediction, references):
        return 0.0
    return max(_rouge().score(r, prediction)["rougeL"].fmeasure for r in references)


# A letter on its own: "(b)", "C" before a non-letter, or lowercase "d" before punctuation/end
# (so the article in "a tower" is not read as option A).
_LETTER = r"(?:\(([A-Da-d])\)|([A-D])(?![A-Za-z0-9])|([a-d])(?![A-Za-z0-9\s]))"
_LETTER_PATTERNS = (
    # "The answer is C", "answer: (d)", "Option B", "correct choice is (A)"
    re.compile(r"(?i:\b(?:answer|option|choice)\b(?:\s+is)?)\s*[:\-]?\s*" + _LETTER),
    # "B", "B.", "(B) The tower", "b)"; a leading "A cat ..." is a sentence, not option A
    re.compile(r"^\s*(?:\(([A-Da-d])\)|([A-D])(?![A-Za-z0-9])(?!\s+[a-z])|([a-d])(?![A-Za-z0-9\s]))"),
    # "I think (C) is right"
    re.compile(r"\(([A-Da-d])\)"),
)


def extract_choice(prediction: str) -> str | None:
    """The option letter (A-D) a model's free-text answer picks, or None if it names none."""
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(prediction)
        if match:
            return next(g for g in match.groups() if g).upper()
    return None


def choice_accuracy(prediction: str, gold_letter: str) -> float:
    """QuALITY accuracy: 1.0 if the letter extracted from the prediction is the gold letter."""
    gold = gold_letter.strip().strip("()").upper()
    if gold not in ("A", "B", "C", "D"):
        raise ValueError(f"gold letter must be one of A-D, got {gold_letter!r}")
    if not prediction or not prediction.strip():
        return 0.0
    return float(extract_choice(prediction) == gold)


def accuracy(prediction: str, references: Sequence[str]) -> float:
    """``choice_accuracy`` in the registry's shape: references is ``[gold_letter]``."""
    if not _check(prediction, references):
        return 0.0
    return max(choice_accuracy(prediction, r) for r in references)


METRICS: dict[str, Callable[[str, list[str]], float]] = {
    "accuracy": accuracy,
    "qa_f1": qa_f1,
    "hotpot_f1": hotpot_f1,
    "hotpot_em": hotpot_em,
    "exact_match": exact_match,
    "rouge_l": rouge_l,
}
"""Metric name (as stored on an ``EvalExample``) to scorer ``(prediction, references) -> float``."""
