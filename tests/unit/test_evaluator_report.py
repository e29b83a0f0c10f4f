"""InstructScore reports: lenient parsing, the score formula and the canonical format."""

from __future__ import annotations

import random

import pytest

from ringbit.evaluator.report import MAX_ERRORS, ReportError, format_report, parse_report, score

ONE = """Your Translation contains 1 error:
Error type 1: Wrong grammatical register (eg, inappropriately informal pronouns)
Major/minor: Minor
Error location 1: "to you"
Explanation for error 1: The phrase "to you" is informal."""

TWO = """Your Translation contains 2 errors:
Error type 1: Incorrect translation is missing content from the correct translation
Major/minor: Major
Error location 1: "Or how long before the restaurant is ready?"
Explanation for error 1: The second question is missing.
Error type 2: Problems with grammar, other than orthography
Major/minor: Minor
Error location 2: "Can you help me ask?"
Explanation for error 2: "them" is missing after "ask"."""


def canonical(severities: list[str]) -> str:
    lines = [f"Your Translation contains {len(severities)} errors:"]
    for i, severity in enumerate(severities, start=1):
        lines += [f"Error type {i}: type {i}", f"Major/minor: {severity}",
                  f'Error location {i}: "span {i}"', f"Explanation for error {i}: why {i}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- canonical format


def test_no_error_sentences():
    assert parse_report("Your generation contains no error.") == []
    assert parse_report("Your Translation contains no error.") == []
    assert parse_report("") == []


def test_one_error():
    assert parse_report(ONE) == [ReportError(
        type="Wrong grammatical register (eg, inappropriately informal pronouns)",
        severity="minor", location="to you", explanation='The phrase "to you" is informal.',
    )]
    assert score(parse_report(ONE)) == -1.0


def test_two_errors():
    errors = parse_report(TWO)
    assert [e.severity for e in errors] == ["major", "minor"]
    assert errors[0].location == "Or how long before the restaurant is ready?"
    assert errors[1].type == "Problems with grammar, other than orthography"
    assert errors[1].explanation == '"them" is missing after "ask".'
    assert all(e.dimension is None for e in errors)
    assert score(errors) == -6.0


def test_five_errors():
    errors = parse_report(canonical(["Major", "Minor", "Minor", "Major", "Minor"]))
    assert [e.type for e in errors] == [f"type {i}" for i in range(1, 6)]
    assert [e.location for e in errors] == [f"span {i}" for i in range(1, 6)]
    assert [e.explanation for e in errors] == [f"why {i}" for i in range(1, 6)]
    assert score(errors) == -13.0


def test_data2text_dimension_and_double_space():
    text = """Your generation contains 2 errors:
Error dimension 1: Correctness
Error type 1: The text mentions the wrong object for a given predicate
Major/minor:  Major
Error location 1: "agrgentine de grunwald"
Explanation for error 1: Should be "Anatole de Grunwald".
Error dimension 2: Fluency
Error type 2: The text does not flow or connect smoothly between sentences
Major/minor:  Minor
Error location 2: "It also plays"
Explanation for error 2: No clear transition. ein"""
    errors = parse_report(text)
    assert [(e.dimension, e.severity) for e in errors] == [("Correctness", "major"), ("Fluency", "minor")]
    assert errors[0].location == "agrgentine de grunwald"
    assert errors[1].explanation == "No clear transition. ein"  # trailing junk on the line is kept


# ----------------------------------------------------------------------------- older variants


def test_numbered_list_with_label_lines():
    text = """1. Error Type: Incorrect translation does not accurately represent the correct translation
   Label: Minor
   Error Location: "take a light breath" in the model generated translation
   Explanation: The correct translation should be "breathe out".

2. Error Type: Incorrect translation is missing content
   Label: Major
   Error Location: "health of your body"
   Explanation: Missing."""
    errors = parse_report(text)
    assert [e.severity for e in errors] == ["minor", "major"]
    assert errors[0].location == "take a light breath"
    assert errors[0].explanation == 'The correct translation should be "breathe out".'
    assert score(errors) == -6.0


def test_error_headers_with_dash_bullets_and_plain_keys():
    text = """Error 1:
- Error Type: Incorrect translation does not accurately represent the correct translation
- Major/Minor: Major
- Error Location: "Or how soon will the restaurant be ready?"
- Explanation: The meaning changes.

Error 2:
Type: Incorrect translation is missing content
Major/Minor: Minor
Error Location: "Can you help me ask?"
Explanation: "them" is omitted.


Overall the translation is understandable."""
    errors = parse_report(text)
    assert [(e.type, e.severity) for e in errors] == [
        ("Incorrect translation does not accurately represent the correct translation", "major"),
        ("Incorrect translation is missing content", "minor"),
    ]
    assert errors[1].location == "Can you help me ask?"
    assert errors[1].explanation == '"them" is omitted.'


def test_capitalisation_severity_key_and_missing_numbers():
    text = """ERROR TYPE: Omission
SEVERITY: major
ERROR LOCATION: 'the cat'
EXPLANATION: left out
error type: Addition
severity: Minor
error location: "a dog"
explanation: added"""
    errors = parse_report(text)
    assert [(e.type, e.severity, e.location) for e in errors] == [
        ("Omission", "major", "the cat"), ("Addition", "minor", "a dog")]


def test_fields_glued_on_one_line():
    text = ("Your translation contains 1 errors.\nError Location 1: 'overdue', "
            "Error Type: Accuracy/Mistranslation, Severity: Major")
    assert parse_report(text) == [ReportError("Accuracy/Mistranslation", "major", "overdue", "")]


def test_header_text_is_the_type_when_no_type_line_follows():
    errors = parse_report("Error 1: Mistranslation\nMajor/minor: Major\nError location 1: \"x\"")
    assert errors == [ReportError("Mistranslation", "major", "x", "")]


# ----------------------------------------------------------------------------- malformed input


def test_block_without_severity_is_dropped():
    text = """Your Translation contains 3 errors:
Error type 1: A
Major/minor: Major
Error location 1: "a"
Explanation for error 1: ea
Error type 2: B
Error location 2: "b"
Explanation for error 2: eb
Error type 3: C
Major/minor: Minor
Error location 3: "c"
Explanation for error 3: ec"""
    errors = parse_report(text)
    assert [(e.type, e.location) for e in errors] == [("A", "a"), ("C", "c")]
    assert score(errors) == -6.0


def test_truncated_report_keeps_complete_blocks():
    text = canonical(["Major", "Minor"]) + "\nError type 3: Cut off\nError location 3: \"half"
    assert [e.type for e in parse_report(text)] == ["type 1", "type 2"]
    cut_in_severity = canonical(["Major"]) + "\nError type 2: X\nMajor/mi"
    assert len(parse_report(cut_in_severity)) == 1
    unknown_severity = "Error type 1: X\nMajor/minor: Critical\nError location 1: \"x\""
    assert parse_report(unknown_severity) == []


def test_severity_only_block_counts_and_unterminated_quote_is_kept():
    assert parse_report("Major/minor: Major") == [ReportError("", "major", "", "")]
    errors = parse_report('Error type 1: T\nMajor/minor: Minor\nError location 1: "no closing')
    assert errors[0].location == "no closing"


def test_header_only_report_has_no_error():
    assert parse_report("Your Translation contains 2 errors:\n") == []


def test_more_than_five_errors_keeps_the_first_five():
    errors = parse_report(canonical(["Major"] * 7))
    assert len(errors) == MAX_ERRORS == 5
    assert [e.type for e in errors] == [f"type {i}" for i in range(1, 6)]
    assert score(errors) == -25.0


def test_random_strings_never_raise():
    rng = random.Random(1234)
    pieces = ["Error type 1:", "Major/minor:", " Major", " Minor", "Error location 2:", '"', "\n",
              "Explanation for error 3:", "Label:", "Error 4:", "1.", "- ", "Severity:", ":", "  ",
              "\u201c", "x", "Your Translation contains 9 errors:", "Error dimension 1:", "\r"]
    alphabet = "abcXYZ019 :\"'\n\t-.*\u2022\u201d\u00e9\x00\u2028/"
    for i in range(200):
        if i % 2:
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        errors = parse_report(text)
        assert len(errors) <= MAX_ERRORS
        assert all(e.severity in ("major", "minor") for e in errors)
        assert -25.0 <= score(errors) <= 0.0


def test_long_line_without_colon_is_fast():
    parse_report("a " * 50_000 + "\n" + " " * 50_000)


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="text"):
        parse_report(None)


# ----------------------------------------------------------------------------- score


def test_score_formula():
    major, minor = ReportError("t", "major", "l", "e"), ReportError("t", "minor", "l", "e")
    assert score([]) == 0.0
    assert score([minor]) == -1.0
    assert score([major]) == -5.0
    assert score([major, minor, minor]) == -7.0
    assert score([major] * 5) == -25.0
    assert score([minor] * 5 + [major]) == -5.0  # only the first five errors count
    assert isinstance(score([minor]), float)


def test_severity_is_normalised_and_validated():
    assert ReportError("t", " Major ", "l", "e").severity == "major"
    with pytest.raises(ValueError, match="severity"):
        ReportError("t", "critical", "l", "e")


# ----------------------------------------------------------------------------- formatting


def test_format_report_exact_text():
    errors = [ReportError("Omission", "major", "the cat", "Left out."),
              ReportError("Addition", "minor", "very", "Added.")]
    assert format_report(errors) == (
        "Your Translation contains 2 errors:\n"
        "Error type 1: Omission\nMajor/minor: Major\nError location 1: \"the cat\"\n"
        "Explanation for error 1: Left out.\n"
        "Error type 2: Addition\nMajor/minor: Minor\nError location 2: \"very\"\n"
        "Explanation for error 2: Added."
    )
    assert format_report(errors[:1]).startswith("Your Translation contains 1 error:\n")
    assert format_report([]) == "Your Translation contains no error."
    assert format_report([], noun="generation") == "Your generation contains no error."
    dimensional = [ReportError("Wrong object", "minor", "x", "y", dimension="Correctness")]
    assert format_report(dimensional, noun="generation") == (
        "Your generation contains 1 error:\nError dimension 1: Correctness\n"
        "Error type 1: Wrong object\nMajor/minor: Minor\nError location 1: \"x\"\n"
        "Explanation for error 1: y"
    )


def test_format_report_rejects_more_than_five():
    with pytest.raises(ValueError, match="errors"):
        format_report([ReportError("t", "minor", "l", "e")] * 6)


def test_round_trip():
    errors = [
        ReportError('Omission: deleted "x y"', "major", 'a "quoted" span', "It is gone: really."),
        ReportError("", "minor", "", ""),
        ReportError("Word order", "minor", "b a", "Swapped.", dimension="Fluency"),
        ReportError("Mistranslation", "major", '"', "Only a quote."),
        ReportError("Addition", "major", "très bien", "Added 'très bien'."),
    ]
    for noun in ("Translation", "generation"):
        assert parse_report(format_report(errors, noun)) == errors
        for k in range(len(errors) + 1):
            assert parse_report(format_report(errors[:k], noun)) == errors[:k]
    assert [e.to_dict() for e in errors][0] == {
        "type": 'Omission: deleted "x y"', "severity": "major", "location": 'a "quoted" span',
        "explanation": "It is gone: really.", "dimension": None}
    assert ReportError.from_dict(errors[2].to_dict()) == errors[2]


def test_newlines_inside_fields_are_flattened():
    error = ReportError("two\nlines", "minor", "a\nb", "x\r\ny")
    assert parse_report(format_report([error])) == [ReportError("two lines", "minor", "a b", "x y")]


@pytest.mark.parametrize("text, parsed, expected", [
    ("", False, None),                                   # an empty answer is not a perfect score
    ("The translation looks fine to me.", False, None),  # free text, no report
    ("Your Translation contains 2 errors:\nError type 1: Mistranslation", False, None),  # cut off
    ("Your Translation contains no error.", True, 0.0),
    ("Your translation contains 0 errors.", True, 0.0),
    ("Your Translation contains 1 errors:\nError type 1: Mistranslation\nMajor/minor: Minor\n"
     'Error location 1: "sit"\nExplanation for error 1: tense', True, -1.0),
])
def test_a_report_that_is_not_well_formed_has_no_score(text, parsed, expected):
    from ringbit.evaluator.report import read_report

    out = read_report(text)
    assert out["parsed"] is parsed and out["score"] == expected
