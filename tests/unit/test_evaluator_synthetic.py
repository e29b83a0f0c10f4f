"""SEScore-style synthetic errors: each operation, the severity rule, bounds, data sets."""

from __future__ import annotations

import random
import re

import pytest

from ringbit.evaluator.report import format_report, parse_report, score
from ringbit.evaluator.synthetic import (
    STOP_WORDS, SyntheticExample, build_vocabulary, is_light, make_examples, perturb, read_jsonl,
    write_jsonl,
)

REFERENCE = ("The old lighthouse keeper walked along the rocky shore every morning before "
             "sunrise , counting ships and writing notes in his weathered journal .")
VOCAB = ["harbor", "quickly", "the", "of", "lantern", "and", "green", "a", "storm", "to"]
TEXT = (
    "The committee approved the new budget after a long debate about schools and roads. "
    "Short one. A small group of students met at the library on Monday to discuss the project! "
    "Why would anyone leave the door open during a storm like this? "
    "She did not expect the results to be so clear, but the data was convincing. "
    "The river flooded the valley twice last spring and the farmers lost most of their crops."
)
# A sentence with numbers, auxiliaries and punctuation, for the targeted MQM-style edits.
FACTS = "In 2019 , the council was sure the bridge is safe; it has 3 lanes, and the toll does rise every year ."
OP_PREFIX = {"insert": "Addition: inserted ", "replace": "Mistranslation: replaced ",
             "delete": "Omission: deleted ", "swap": "Word order: swapped ",
             "negation": "Mistranslation: negated ", "number": "Mistranslation: number ",
             "spelling": "Spelling: ", "punctuation": "Punctuation: ", "grammar": "Grammar: "}
TARGETED_SEVERITY = {"negation": "major", "number": "major", "spelling": "minor", "punctuation": "minor",
                     "grammar": "minor"}


def op_of(error) -> str:
    return next(op for op, prefix in OP_PREFIX.items() if error.type.startswith(prefix))


def quoted(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def single_error_examples() -> dict[str, list[SyntheticExample]]:
    """One-error perturbations of REFERENCE and FACTS for seeds 0..119, grouped by operation."""
    by_op: dict[str, list[SyntheticExample]] = {op: [] for op in OP_PREFIX}
    for reference in (REFERENCE, FACTS):
        for seed in range(120):
            example = perturb(reference, random.Random(seed), VOCAB, n_errors=1)
            assert len(example.errors) == 1
            by_op[op_of(example.errors[0])].append(example)
    return by_op


EXAMPLES = single_error_examples()


def light(tokens) -> bool:
    return all(is_light(t) for t in tokens)


def test_every_operation_occurs():
    assert all(len(examples) >= 10 for examples in EXAMPLES.values()), {
        op: len(v) for op, v in EXAMPLES.items()}


def test_insert_adds_1_to_4_vocabulary_tokens_at_one_place():
    for ex in EXAMPLES["insert"]:
        ref, cand, (error,) = ex.reference.split(), ex.candidate.split(), ex.errors
        added = quoted(error.type)[0].split()
        assert 1 <= len(added) <= 4 and set(added) <= set(VOCAB)
        assert len(cand) == len(ref) + len(added)
        assert any(cand[:i] == ref[:i] and cand[i:i + len(added)] == added
                   and cand[i + len(added):] == ref[i:] for i in range(len(ref) + 1))
        assert error.location == " ".join(added)
        assert error.severity == ("minor" if light(added) else "major")


def test_replace_changes_1_to_4_consecutive_tokens():
    for ex in EXAMPLES["replace"]:
        ref, cand, (error,) = ex.reference.split(), ex.candidate.split(), ex.errors
        old, new = (q.split() for q in quoted(error.type))
        assert len(cand) == len(ref) and 1 <= len(old) == len(new) <= 4
        changed = [i for i in range(len(ref)) if ref[i] != cand[i]]
        i = changed[0]
        assert changed == list(range(i, i + len(old)))  # every replaced token really differs
        assert ref[i:i + len(old)] == old and cand[i:i + len(new)] == new
        assert set(new) <= set(VOCAB)
        assert error.location == " ".join(new)
        minor = all(a.strip(",.").lower() == b.strip(",.").lower() or (is_light(a) and is_light(b))
                    for a, b in zip(old, new))
        assert error.severity == ("minor" if minor else "major")


def test_delete_removes_1_to_4_consecutive_tokens_and_points_at_the_neighbours():
    for ex in EXAMPLES["delete"]:
        ref, cand, (error,) = ex.reference.split(), ex.candidate.split(), ex.errors
        removed = quoted(error.type)[0].split()
        k = len(removed)
        assert 1 <= k <= 4 and len(cand) == len(ref) - k
        starts = [i for i in range(len(cand) + 1) if ref[:i] + ref[i + k:] == cand and ref[i:i + k] == removed]
        assert starts
        i = starts[0]
        neighbours = ref[max(i - 1, 0):i] + ref[i + k:i + k + 1]
        assert error.location == " ".join(neighbours)
        assert error.severity == ("minor" if light(removed) else "major")


def test_swap_exchanges_two_tokens_1_to_4_apart():
    distances = set()
    for ex in EXAMPLES["swap"]:
        ref, cand, (error,) = ex.reference.split(), ex.candidate.split(), ex.errors
        changed = [i for i in range(len(ref)) if ref[i] != cand[i]]
        assert len(changed) == 2
        i, j = changed
        distances.add(j - i)
        assert 1 <= j - i <= 4
        assert (cand[i], cand[j]) == (ref[j], ref[i])
        assert quoted(error.type) == [ref[i], ref[j]]
        assert error.location == " ".join(cand[i:j + 1])
        minor = j - i == 1 or (is_light(ref[i]) and is_light(ref[j]))
        assert error.severity == ("minor" if minor else "major")
    assert distances & {1} and distances - {1}


def test_severity_rule_on_fixed_cases():
    assert is_light("the") and is_light("The,") and is_light("...") and is_light("(of)")
    assert not is_light("lighthouse") and not is_light("not") and not is_light("never")
    assert {"not", "no", "never"}.isdisjoint(STOP_WORDS)
    # Only function words around and in the vocabulary: every operation is minor.
    for seed in range(30):
        ex = perturb("the of and to in a with for at by", random.Random(seed), ["the", "of", "a"], 3)
        assert ex.errors and all(e.severity == "minor" for e in ex.errors)
        assert ex.score == -len(ex.errors)
    # Content words only: insert, replace and delete are major; a swap is minor only when adjacent.
    for seed in range(30):
        ex = perturb("alpha beta gamma delta epsilon zeta eta theta", random.Random(seed),
                     ["kappa", "lambda"], 1)
        (error,) = ex.errors
        if op_of(error) == "swap":
            a, b = quoted(error.type)
            adjacent = error.location in (f"{b} {a}",)
            assert error.severity == ("minor" if adjacent else "major")
        elif op_of(error) == "spelling":
            assert error.severity == "minor"  # a misspelt word stays readable
        else:
            assert error.severity == "major"


def test_n_errors_bounds():
    for seed in range(40):
        ex = perturb(REFERENCE, random.Random(seed), VOCAB)  # None: 1..5
        assert 1 <= len(ex.errors) <= 5
        assert ex.candidate != ex.reference
    assert {len(perturb(REFERENCE, random.Random(s), VOCAB).errors) for s in range(40)} == {1, 2, 3, 4, 5}
    for n in range(1, 6):
        for seed in range(10):
            assert len(perturb(REFERENCE, random.Random(seed), VOCAB, n_errors=n).errors) == n
    clean = perturb(REFERENCE, random.Random(0), VOCAB, n_errors=0)
    assert clean.errors == [] and clean.candidate == REFERENCE and clean.score == 0.0
    assert clean.report == "Your Translation contains no error."
    for bad in (-1, 6):
        with pytest.raises(ValueError, match="n_errors"):
            perturb(REFERENCE, random.Random(0), VOCAB, n_errors=bad)


def test_short_sentences_cap_the_number_of_errors():
    # Without a vocabulary, and with words no targeted edit fits (short, no number, no
    # auxiliary, no punctuation), only delete and swap exist; two words leave room for one.
    for seed in range(20):
        ex = perturb("ox yak", random.Random(seed), [], n_errors=5)
        assert len(ex.errors) == 1 and ex.candidate in ("yak ox", "ox", "yak")
    # Swapping two equal tokens would change nothing, so repeated words only allow deletions.
    for seed in range(30):
        ex = perturb("x x x x x x x x x x", random.Random(seed), [], n_errors=3)
        assert ex.errors and all(op_of(e) == "delete" for e in ex.errors)
    # Edits that cancel out (delete an "x" here, insert an "x" there) are redrawn, never reported.
    for seed in range(100):
        ex = perturb("x x x x", random.Random(seed), ["x"], n_errors=2)
        assert (ex.candidate != ex.reference) == bool(ex.errors)
    lone = perturb("solo", random.Random(0), [], n_errors=3)
    assert lone.errors == [] and lone.candidate == "solo"


def test_locations_are_spans_of_the_candidate_and_scores_match():
    for seed in range(60):
        ex = perturb(REFERENCE, random.Random(seed), VOCAB, n_errors=5)
        padded = f" {ex.candidate} "
        for error in ex.errors:
            assert error.location and f" {error.location} " in padded
            assert error.explanation.endswith(".")
        assert ex.score == score(ex.errors) == -5.0 * sum(e.severity == "major" for e in ex.errors) \
            - sum(e.severity == "minor" for e in ex.errors)
        assert ex.report == format_report(ex.errors)
        assert parse_report(ex.report) == ex.errors


def test_perturb_is_deterministic_per_seed():
    a = [perturb(REFERENCE, random.Random(s), VOCAB).to_dict() for s in range(20)]
    b = [perturb(REFERENCE, random.Random(s), VOCAB).to_dict() for s in range(20)]
    assert a == b
    assert len({d["candidate"] for d in a}) > 15


def test_build_vocabulary():
    vocab = build_vocabulary(["b a, a. c", "(a) b d"], size=3)
    assert vocab == ["a", "b", "c"]  # a:3, b:2, then c before d (first seen)
    assert build_vocabulary(["... !! x"]) == ["x"]
    with pytest.raises(ValueError, match="size"):
        build_vocabulary(["x"], size=0)


def test_make_examples_on_english_text():
    examples = make_examples([TEXT], n=20, seed=3)
    assert len(examples) == 20
    sentences = {
        "The committee approved the new budget after a long debate about schools and roads.",
        "A small group of students met at the library on Monday to discuss the project!",
        "Why would anyone leave the door open during a storm like this?",
        "She did not expect the results to be so clear, but the data was convincing.",
        "The river flooded the valley twice last spring and the farmers lost most of their crops.",
    }
    assert {e.reference for e in examples} == sentences  # "Short one." is under min_words
    clean = [e for e in examples if not e.errors]
    assert len(clean) == 2  # round(20 * 0.1)
    assert all(e.candidate == e.reference and e.report == "Your Translation contains no error."
               for e in clean)
    assert all(e.candidate != e.reference for e in examples if e.errors)
    assert all(e.score == score(e.errors) and e.report == format_report(e.errors) for e in examples)
    assert [e.to_dict() for e in make_examples([TEXT], 20, seed=3)] == [e.to_dict() for e in examples]
    assert [e.to_dict() for e in make_examples([TEXT], 20, seed=4)] != [e.to_dict() for e in examples]
    assert {e.reference for e in make_examples([TEXT], 5, seed=0, max_words=12)} == {
        "Why would anyone leave the door open during a storm like this?"}  # 12 words
    assert {e.reference for e in make_examples([TEXT], 5, seed=0, min_words=16)} == {
        "The river flooded the valley twice last spring and the farmers lost most of their crops."}
    assert make_examples([TEXT], 0) == []
    with pytest.raises(ValueError, match="texts"):
        make_examples(["Too short. Also short."], 3)


def test_jsonl_round_trip(tmp_path):
    examples = make_examples([TEXT], n=12, seed=1)
    path = write_jsonl(examples, tmp_path / "sub" / "synthetic.jsonl")
    assert path.exists() and len(path.read_text(encoding="utf-8").splitlines()) == 12
    loaded = read_jsonl(path)
    assert loaded == examples
    assert [e.to_dict() for e in loaded] == [e.to_dict() for e in examples]
    (tmp_path / "bad.jsonl").write_text('{"reference": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_targeted_edits_change_one_thing_and_say_what():
    """Each MQM-style edit: its fixed severity, a location that is in the candidate, and exactly
    the change its type names (the rest of the sentence untouched)."""
    for op, severity in TARGETED_SEVERITY.items():
        for ex in EXAMPLES[op]:
            ref_tokens, (error,) = ex.reference.split(), ex.errors
            assert error.severity == severity and error.location in ex.candidate
            cand = ex.candidate.split()
            if op == "negation":
                (aux,) = quoted(error.type)
                assert len(cand) == len(ref_tokens) + 1 and error.location == f"{aux} not"
                i = cand.index("not")
                assert cand[:i] + cand[i + 1:] == ref_tokens and cand[i - 1] == aux
            else:
                old, new = quoted(error.type)
                changed = [(a, b) for a, b in zip(ref_tokens, cand) if a != b]
                assert len(cand) == len(ref_tokens) and changed == [(old, new)] and error.location == new
                if op == "number":
                    assert any(c.isdigit() for c in new) and sum(x != y for x, y in zip(old, new)) == 1
                if op == "spelling":
                    assert sorted(old) == sorted(new) and old.lower() != new.lower()
                if op == "punctuation":
                    assert old.rstrip(",.;:!?") == new.rstrip(",.;:!?")
                if op == "grammar":
                    assert {old.lower(), new.lower()} in ({"the", "a"}, {"is", "are"}, {"was", "were"},
                                                          {"has", "have"}, {"does", "do"}, {"an", "a"},
                                                          {"this", "these"})
            assert parse_report(ex.report) == ex.errors and ex.score == score(ex.errors)
