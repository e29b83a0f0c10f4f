"""InstructScore prompts: exact upstream wording per task, source handling, errors."""

from __future__ import annotations

import pytest

from ringbit.evaluator.prompts import NEEDS_SOURCE, TASKS, build_prompt

REF, OUT, SRC = "The cat sat on the mat.", "A cat is on the mat.", "cat, sit, mat"

# The zh-en prompt exactly as in /work/shared/reference/instructscore.md, {ref}/{out} filled in.
ZH_EN = (
    'You are evaluating Chinese-to-English Machine translation task. The correct translation is '
    '"The cat sat on the mat.". The model generated translation is "A cat is on the mat.". Please '
    'identify all errors within each model output, up to a maximum of five. For each error, please '
    'give me the corresponding error type, major/minor label, error location of the model generated '
    'translation and explanation for the error. Major errors can confuse or mislead the reader due '
    "to significant change in meaning, while minor errors don't lead to loss of meaning but will be "
    "noticed."
)

# The other tasks' prompts, copied from xu1998hz/InstructScore_SEScore3 InstructScore.py
# (InstructScore.score), filled in by hand.
TAIL_MT = ZH_EN[ZH_EN.index("Please identify"):]
TAIL_DIM = (
    "Please identify all errors within each model output, up to a maximum of five. For each error, "
    "please give me the corresponding error dimension, error type, major/minor label, error location "
    "of the model generated output and explanation for the error. Major errors can confuse or mislead "
    "the reader due to significant change in meaning, while minor errors don't lead to loss of "
    "meaning but will be noticed."
)
EXPECTED = {
    "zh-en": ZH_EN,
    "en-de": ZH_EN.replace("Chinese-to-English", "English-to-German"),
    "en-ru": ZH_EN.replace("Chinese-to-English", "English-to-Russian"),
    "en-es": ZH_EN.replace("Chinese-to-English", "English-to-Spanish"),
    "caption": (
        'You are evaluating image captioning. The correct generation is "The cat sat on the mat.". '
        'The model generated translation is "A cat is on the mat.". ' + TAIL_MT
    ),
    "data2text": (
        'You are evaluating RDF-to-text task. The correct generation is "The cat sat on the mat.". '
        'The input of model is "cat, sit, mat". The model generated output is '
        '"A cat is on the mat.\n". ' + TAIL_DIM
    ),
    "commonsense": (
        'You are evaluating commonsense text generation. The input of model is "cat, sit, mat". One '
        'of the correct generations is "The cat sat on the mat.". The model generated output is "A '
        'cat is on the mat.". ' + TAIL_MT.replace("model generated translation", "model generated output")
    ),
    "keyword-to-text": (
        'You are evaluating RDF-to-text task. The correct generation is "The cat sat on the mat.". '
        'The input of model is "cat, sit, mat". The model generated output is '
        '"A cat is on the mat.\n". ' + TAIL_DIM
    ),
}


def test_tasks_and_sources():
    assert TASKS == ("zh-en", "en-de", "en-ru", "en-es", "caption", "data2text", "commonsense",
                     "keyword-to-text")
    assert NEEDS_SOURCE == {"data2text", "commonsense", "keyword-to-text"}


def test_zh_en_prompt_is_the_reference_text():
    assert build_prompt("zh-en", REF, OUT) == ZH_EN
    assert build_prompt("zh-en", REF, OUT).encode() == ZH_EN.encode()


@pytest.mark.parametrize("task", list(EXPECTED))
def test_every_task_matches_the_upstream_wording(task):
    prompt = build_prompt(task, REF, OUT, SRC if task in NEEDS_SOURCE else None)
    assert prompt == EXPECTED[task]
    assert f'"{REF}"' in prompt and OUT in prompt


@pytest.mark.parametrize("task", sorted(NEEDS_SOURCE))
def test_source_tasks_include_the_source_and_require_it(task):
    assert f'The input of model is "{SRC}"' in build_prompt(task, REF, OUT, SRC)
    for missing in (None, "", "   "):
        with pytest.raises(ValueError) as info:
            build_prompt(task, REF, OUT, missing)
        assert str(info.value) == f"source: task '{task}' needs a source"


@pytest.mark.parametrize("task", [t for t in TASKS if t not in NEEDS_SOURCE])
def test_other_tasks_ignore_a_source(task):
    assert build_prompt(task, REF, OUT, "ignored input") == build_prompt(task, REF, OUT)
    assert "ignored input" not in build_prompt(task, REF, OUT, "ignored input")


def test_unknown_task_names_the_field_and_the_choices():
    with pytest.raises(ValueError) as info:
        build_prompt("fr-en", REF, OUT)
    message = str(info.value)
    assert message.startswith("task: unknown task 'fr-en'; choose one of ")
    assert all(task in message for task in TASKS)


def test_braces_and_quotes_in_inputs_are_kept_verbatim():
    prompt = build_prompt("commonsense", "a {ref} b", 'say "{out}"', "{src} {0}")
    assert '"a {ref} b"' in prompt and 'say "{out}"' in prompt and '"{src} {0}"' in prompt


def test_non_string_reference_is_rejected():
    with pytest.raises(TypeError, match="reference"):
        build_prompt("zh-en", None, OUT)
