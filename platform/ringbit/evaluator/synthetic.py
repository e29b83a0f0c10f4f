"""SEScore-style synthetic training data for InstructScore, offline and without models.

A reference sentence (tokens = whitespace split) gets 1-5 non-overlapping errors, each one of

* insert:  1-4 tokens drawn from a vocabulary, put at one position;
* replace: 1-4 consecutive tokens, each replaced by a different vocabulary token;
* delete:  1-4 consecutive tokens (at least one token is always left);
* swap:    two different tokens 1-4 positions apart exchange places;

or one of the targeted MQM-style edits (their severity is fixed by the category, see _TRY):

* negation:    "not" after an auxiliary ("is" -> "is not"), major;
* number:      one digit of a number changed, major;
* spelling:    two adjacent letters of a content word exchanged, minor;
* punctuation: a token's trailing punctuation dropped or changed, minor;
* grammar:     an article or agreement slip ("the" -> "a", "is" -> "are"), minor.

An edited token, and for a deletion the words on either side of the gap (which must be untouched
ones), are locked: later errors of the same sentence never touch them, so each error's report
entry stays exact and the locations of two errors never overlap.

Severity of the four generic edits. SEScore calls an error minor when the perturbed sentence and the original still entail
each other both ways (an NLI model), else major. That needs a model, so this module uses a fixed,
deterministic rule instead:

    minor  when every token the edit removes or adds is "light": punctuation only, or (after
           stripping punctuation and lower-casing) in STOP_WORDS, a fixed list of English
           function words (negations such as "not", "no", "never" are deliberately left out,
           they flip the meaning); a replacement that only changes case or punctuation
           ("the" -> "The,") counts as light too; and any swap of two adjacent tokens;
    major  otherwise.

Report entry for each error (listed in the order of their location in the candidate):
``location`` is the affected span of the candidate (the inserted or new tokens; for a swap the
span from the first swapped token to the second; for a deletion the words on either side of the
gap), ``type`` a short text such as ``Omission: deleted "x y"`` or
``Word order: swapped "a" and "b"``, and ``explanation`` one sentence saying why it is minor or
major.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ringbit.evaluator.report import MAX_ERRORS, ReportError, format_report, score

OPERATIONS = ("insert", "replace", "delete", "swap", "negation", "number", "spelling", "punctuation",
              "grammar")
MAX_SPAN = 4
NO_ERROR_FRACTION = 0.1  # share of make_examples' examples left without an error
_RETRIES = 20  # perturbation attempts before giving up on a sentence whose edits cancel out

STOP_WORDS = frozenset(
    """
    a an the this that these those some any each every both either neither all
    and or but so yet if then than because while although though as
    of in on at to for from by with about into onto over under between among through during
    before after above below up down out off upon within across along around
    is am are was were be been being do does did done have has had having
    will would shall should can could may might must
    i me my mine we us our ours you your yours he him his she her hers it its
    they them their theirs who whom whose which what where when there here
    also too very just only even quite rather such
    """.split()
)
_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2013\u2014\u2026"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _core(token: str) -> str:
    return token.strip(_PUNCT).lower()


def is_light(token: str) -> bool:
    """Punctuation only, or a function word of STOP_WORDS (case and punctuation ignored)."""
    core = _core(token)
    return not core or core in STOP_WORDS


@dataclass
class SyntheticExample:
    reference: str
    candidate: str
    errors: list[ReportError]
    report: str  # format_report(errors)
    score: float  # score(errors)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "errors": [e.to_dict() for e in self.errors],
            "report": self.report,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticExample:
        return cls(
            reference=data["reference"],
            candidate=data["candidate"],
            errors=[ReportError.from_dict(e) for e in data["errors"]],
            report=data["report"],
            score=float(data["score"]),
        )


def _example(reference: str, candidate: str, errors: list[ReportError]) -> SyntheticExample:
    return SyntheticExample(reference, candidate, errors, format_report(errors), score(errors))


# --------------------------------------------------------------------------------- perturbation


@dataclass
class _Slot:
    token: str | None  # None marks the gap a deletion left (renders as nothing)
    tag: int | None = None  # the error that locked this slot; None = free to edit


@dataclass
class _Edit:
    op: str
    severity: str
    removed: list[str] = field(default_factory=list)  # delete, replace: the old tokens
    added: list[str] = field(default_factory=list)  # insert, replace: the new tokens
    swapped: tuple[str, str] = ("", "")
    label: tuple[str, str] | None = None  # (type, explanation) of the targeted MQM-style edits


def _free_runs(slots: list[_Slot], length: int) -> list[int]:
    """Starts of `length` consecutive free slots."""
    return [
        s for s in range(len(slots) - length + 1)
        if all(slot.tag is None for slot in slots[s:s + length])
    ]


def _insert_points(slots: list[_Slot]) -> list[int]:
    """Boundaries where an insertion splits no locked span and does not touch a deletion gap."""
    points = []
    for b in range(len(slots) + 1):
        left = slots[b - 1] if b > 0 else None
        right = slots[b] if b < len(slots) else None
        if (left is not None and left.token is None) or (right is not None and right.token is None):
            continue
        inside_span = left is not None and right is not None and left.tag is not None
        if inside_span and left.tag == right.tag:
            continue
        points.append(b)
    return points


def _try_insert(slots, rng, vocabulary, size, tag) -> _Edit | None:
    points = _insert_points(slots) if vocabulary else []
    if not points:
        return None
    b = rng.choice(points)
    added = [rng.choice(vocabulary) for _ in range(size)]
    slots[b:b] = [_Slot(t, tag) for t in added]
    severity = "minor" if all(is_light(t) for t in added) else "major"
    return _Edit("insert", severity, added=added)


def _draw_other(rng: random.Random, vocabulary: list[str], old: str) -> str:
    """A vocabulary word other than `old` (one is known to exist)."""
    for _ in range(16):
        word = rng.choice(vocabulary)
        if word != old:
            return word
    return rng.choice([w for w in vocabulary if w != old])


def _try_replace(slots, rng, vocabulary, size, tag) -> _Edit | None:
    distinct = set(vocabulary)
    starts = [  # every replaced token needs a vocabulary word that differs from it
        s for s in _free_runs(slots, size)
        if all(len(distinct - {slot.token}) > 0 for slot in slots[s:s + size])
    ]
    if not starts:
        return None
    s = rng.choice(starts)
    removed = [slot.token for slot in slots[s:s + size]]
    added = [_draw_other(rng, vocabulary, old) for old in removed]
    slots[s:s + size] = [_Slot(t, tag) for t in added]
    light = all(
        _core(old) == _core(new) or (is_light(old) and is_light(new))
        for old, new in zip(removed, added)
    )
    return _Edit("replace", "minor" if light else "major", removed=removed, added=added)


def _try_delete(slots, rng, vocabulary, size, tag) -> _Edit | None:
    rendered = sum(slot.token is not None for slot in slots)
    if rendered - size < 1:
        return None
    starts = [  # the words around the gap become its location: they must be free too
        s for s in _free_runs(slots, size)
        if all(slots[n].tag is None for n in (s - 1, s + size) if 0 <= n < len(slots))
    ]
    if not starts:
        return None
    s = rng.choice(starts)
    removed = [slot.token for slot in slots[s:s + size]]
    slots[s:s + size] = [_Slot(None, tag)]
    for neighbour in (s - 1, s + 1):
        if 0 <= neighbour < len(slots):
            slots[neighbour].tag = tag
    severity = "minor" if all(is_light(t) for t in removed) else "major"
    return _Edit("delete", severity, removed=removed)


def _try_swap(slots, rng, vocabulary, distance, tag) -> _Edit | None:
    starts = [
        s for s in _free_runs(slots, distance + 1)
        if slots[s].token != slots[s + distance].token
    ]
    if not starts:
        return None
    s = rng.choice(starts)
    first, second = slots[s].token, slots[s + distance].token
    slots[s].token, slots[s + distance].token = second, first
    for slot in slots[s:s + distance + 1]:
        slot.tag = tag
    light = distance == 1 or (is_light(first) and is_light(second))
    return _Edit("swap", "minor" if light else "major", swapped=(first, second))


# Targeted edits after MQM's categories (Freitag et al. 2021, arXiv:2104.14478): accuracy errors
# that flip a fact (a negation, a number) are major; fluency errors that leave the meaning readable
# (spelling, punctuation, grammar such as article or agreement) are minor.
AUXILIARIES = frozenset("is are was were can will does do did should could would has have must may".split())
GRAMMAR_PAIRS = {"a": "the", "the": "a", "an": "a", "is": "are", "are": "is", "was": "were", "were": "was",
                 "has": "have", "have": "has", "does": "do", "do": "does", "this": "these", "these": "this"}
_TRAILING_PUNCT = ",.;:!?"


def _free_slots(slots: list[_Slot], test) -> list[int]:
    return [i for i, slot in enumerate(slots) if slot.tag is None and slot.token is not None and test(slot.token)]


def _replace_one(slots: list[_Slot], i: int, new: str, tag: int, op: str, severity: str,
                 label: tuple[str, str]) -> _Edit:
    old = slots[i].token
    slots[i] = _Slot(new, tag)
    return _Edit(op, severity, removed=[old], added=[new], label=label)


def _try_negation(slots, rng, vocabulary, size, tag) -> _Edit | None:
    """"is" -> "is not": the candidate states the opposite (accuracy, major)."""
    spots = [i for i in _free_slots(slots, lambda t: t.lower() in AUXILIARIES)
             if i + 1 >= len(slots) or (slots[i + 1].token or "").lower() not in ("not", "never", "n't")]
    if not spots:
        return None
    i = rng.choice(spots)
    aux = slots[i].token
    slots[i].tag = tag
    slots[i + 1:i + 1] = [_Slot("not", tag)]
    return _Edit("negation", "major", added=["not"], label=(
        f'Mistranslation: negated "{aux}"',
        f'The candidate says "{aux} not" where the reference says "{aux}"; this reverses the meaning.'))


def _try_number(slots, rng, vocabulary, size, tag) -> _Edit | None:
    """A different number (accuracy, major)."""
    spots = _free_slots(slots, lambda t: any(c.isdigit() for c in t))
    if not spots:
        return None
    i = rng.choice(spots)
    old = slots[i].token
    digits = [k for k, c in enumerate(old) if c.isdigit()]
    k = rng.choice(digits)
    new = old[:k] + rng.choice([d for d in "0123456789" if d != old[k]]) + old[k + 1:]
    return _replace_one(slots, i, new, tag, "number", "major", (
        f'Mistranslation: number "{old}" became "{new}"',
        f'The candidate has "{new}" where the reference has "{old}"; a wrong number changes the facts.'))


def _try_spelling(slots, rng, vocabulary, size, tag) -> _Edit | None:
    """Two adjacent letters inside a word exchanged (fluency, minor)."""
    spots = _free_slots(slots, lambda t: len(_core(t)) >= 5 and _core(t).isalpha() and not is_light(t))
    if not spots:
        return None
    i = rng.choice(spots)
    old = slots[i].token
    letters = [k for k in range(1, len(old) - 2) if old[k].isalpha() and old[k + 1].isalpha() and old[k] != old[k + 1]]
    if not letters:
        return None
    k = rng.choice(letters)
    new = old[:k] + old[k + 1] + old[k] + old[k + 2:]
    return _replace_one(slots, i, new, tag, "spelling", "minor", (
        f'Spelling: "{old}" misspelled as "{new}"',
        f'The candidate misspells "{old}" as "{new}"; the word is still recognisable, so the meaning is kept.'))


def _try_punctuation(slots, rng, vocabulary, size, tag) -> _Edit | None:
    """A trailing comma, period, ... dropped or changed (fluency, minor)."""
    spots = _free_slots(slots, lambda t: len(t) > 1 and t[-1] in _TRAILING_PUNCT)
    if not spots:
        return None
    i = rng.choice(spots)
    old = slots[i].token
    new = old[:-1] + rng.choice(["", *[c for c in ",;" if c != old[-1]]])
    return _replace_one(slots, i, new, tag, "punctuation", "minor", (
        f'Punctuation: "{old}" written as "{new}"',
        f'The candidate punctuates "{old}" as "{new}"; only punctuation is affected, so the meaning is kept.'))


def _try_grammar(slots, rng, vocabulary, size, tag) -> _Edit | None:
    """An article or agreement error: "a" for "the", "is" for "are" (fluency, minor)."""
    spots = _free_slots(slots, lambda t: t.lower() in GRAMMAR_PAIRS)
    if not spots:
        return None
    i = rng.choice(spots)
    old = slots[i].token
    new = GRAMMAR_PAIRS[old.lower()]
    new = new.capitalize() if old[0].isupper() else new
    return _replace_one(slots, i, new, tag, "grammar", "minor", (
        f'Grammar: "{old}" changed to "{new}"',
        f'The candidate uses "{new}" where the reference has "{old}"; a grammatical slip that keeps the meaning.'))


_TRY = {"insert": _try_insert, "replace": _try_replace, "delete": _try_delete, "swap": _try_swap,
        "negation": _try_negation, "number": _try_number, "spelling": _try_spelling,
        "punctuation": _try_punctuation, "grammar": _try_grammar}
_SIZED = ("insert", "replace", "delete", "swap")  # the others edit one token: no span size


def _apply(slots: list[_Slot], rng: random.Random, vocabulary: list[str], tag: int) -> _Edit | None:
    """One error of a random operation and size; smaller sizes, then other operations, when the
    drawn one does not fit."""
    operations = list(OPERATIONS)
    rng.shuffle(operations)
    for op in operations:
        size = rng.randint(1, MAX_SPAN) if op in _SIZED else 1
        for k in range(size, 0, -1):
            edit = _TRY[op](slots, rng, vocabulary, k, tag)
            if edit is not None:
                return edit
    return None


def _quote(tokens: list[str]) -> str:
    return '"' + " ".join(tokens) + '"'


def _describe(edit: _Edit) -> tuple[str, str]:
    if edit.label is not None:
        return edit.label
    if edit.op == "insert":
        kind = f"Addition: inserted {_quote(edit.added)}"
        what = f"The candidate adds {_quote(edit.added)}, which is not in the reference"
    elif edit.op == "replace":
        kind = f"Mistranslation: replaced {_quote(edit.removed)} with {_quote(edit.added)}"
        what = (f"The candidate has {_quote(edit.added)} where the reference has "
                f"{_quote(edit.removed)}")
    elif edit.op == "delete":
        kind = f"Omission: deleted {_quote(edit.removed)}"
        what = f"The candidate leaves out {_quote(edit.removed)} from the reference"
    else:
        a, b = edit.swapped
        kind = f'Word order: swapped "{a}" and "{b}"'
        what = f'The candidate puts "{a}" and "{b}" in each other\'s place'
    if edit.severity == "major":
        why = "; this changes the meaning of the sentence."
    elif edit.op == "swap" and not (is_light(edit.swapped[0]) and is_light(edit.swapped[1])):
        why = "; the two words are adjacent, so the meaning is kept."
    else:
        why = "; only function words or punctuation are affected, so the meaning is kept."
    return kind, what + why


def _render(slots: list[_Slot], edits: list[_Edit]) -> tuple[str, list[ReportError]]:
    tokens: list[str] = []
    position: list[int] = []  # slot index -> rendered index (of the next token, for a gap)
    for slot in slots:
        position.append(len(tokens))
        if slot.token is not None:
            tokens.append(slot.token)
    placed = []
    for tag, edit in enumerate(edits):
        if edit.op == "delete":
            gap = position[next(i for i, s in enumerate(slots) if s.tag == tag and s.token is None)]
            start, end = max(gap - 1, 0), min(gap, len(tokens) - 1)
        else:
            spots = [position[i] for i, s in enumerate(slots)
                     if s.tag == tag and s.token is not None]
            start, end = min(spots), max(spots)
        kind, explanation = _describe(edit)
        error = ReportError(kind, edit.severity, " ".join(tokens[start:end + 1]), explanation)
        placed.append((start, tag, error))
    placed.sort(key=lambda item: (item[0], item[1]))
    return " ".join(tokens), [error for _, _, error in placed]


def perturb(
    reference: str, rng: random.Random, vocabulary: list[str], n_errors: int | None = None
) -> SyntheticExample:
    """Inject `n_errors` errors (None: rng.randint(1, 5)) into `reference`.

    Fewer errors are made when the sentence has no room left for more (every remaining token
    locked by an earlier error, or no vocabulary for insert/replace). With no error at all the
    candidate is the reference itself.
    """
    if n_errors is not None and not 0 <= n_errors <= MAX_ERRORS:
        raise ValueError(f"n_errors: expected 0..{MAX_ERRORS} or None, got {n_errors}")
    wanted = rng.randint(1, MAX_ERRORS) if n_errors is None else n_errors
    words = reference.split()
    for _ in range(_RETRIES if wanted else 0):
        slots = [_Slot(w) for w in words]
        edits: list[_Edit] = []
        for tag in range(wanted):
            edit = _apply(slots, rng, vocabulary, tag)
            if edit is None:
                break
            edits.append(edit)
        if not edits:
            break
        candidate, errors = _render(slots, edits)
        if candidate != " ".join(words):  # rare: e.g. a deletion and an insertion that cancel out
            return _example(reference, candidate, errors)
    return _example(reference, reference, [])


# --------------------------------------------------------------------------------- data sets


def build_vocabulary(texts: list[str], size: int = 2000) -> list[str]:
    """The `size` most frequent whitespace tokens of `texts`, surrounding punctuation stripped
    (case kept); ties in the order first seen."""
    if size < 1:
        raise ValueError(f"size: expected at least 1, got {size}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(t for t in (w.strip(_PUNCT) for w in text.split()) if t)
    return [token for token, _ in counts.most_common(size)]


def split_sentences(text: str) -> list[str]:
    """Split on whitespace after '.', '!' or '?'; whitespace inside a sentence collapsed."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]


def make_examples(
    texts: list[str], n: int, seed: int = 0, min_words: int = 6, max_words: int = 60
) -> list[SyntheticExample]:
    """`n` synthetic examples from the sentences of `texts` with min_words..max_words words.

    Deterministic for a seed. Sentences are drawn without replacement (reshuffled and reused
    when n exceeds their number), the vocabulary is build_vocabulary(texts), and
    round(n * NO_ERROR_FRACTION) examples, at random positions, are left without an error
    (candidate == reference, report "Your Translation contains no error.").
    """
    if n < 0:
        raise ValueError(f"n: expected a non-negative count, got {n}")
    if not 1 <= min_words <= max_words:
        raise ValueError(
            f"min_words: expected 1 <= min_words <= max_words, got {min_words}, {max_words}")
    sentences = list(dict.fromkeys(
        s for text in texts for s in split_sentences(text)
        if min_words <= len(s.split()) <= max_words
    ))
    if n == 0:
        return []
    if not sentences:
        raise ValueError(f"texts: no sentence with {min_words}..{max_words} words")
    rng = random.Random(seed)
    vocabulary = build_vocabulary(texts)
    order: list[int] = []
    while len(order) < n:
        batch = list(range(len(sentences)))
        rng.shuffle(batch)
        order.extend(batch)
    clean = set(rng.sample(range(n), round(n * NO_ERROR_FRACTION)))
    return [
        perturb(sentences[i], rng, vocabulary, n_errors=0 if j in clean else None)
        for j, i in enumerate(order[:n])
    ]


def write_jsonl(examples: list[SyntheticExample], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
    return path


def read_jsonl(path) -> list[SyntheticExample]:
    examples = []
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                examples.append(SyntheticExample.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a synthetic example ({exc})") from exc
    return examples
