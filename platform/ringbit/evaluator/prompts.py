"""InstructScore input prompts, one per task.

Every template is copied word for word from the original code: ``InstructScore.py`` in
github.com/xu1998hz/InstructScore_SEScore3 (commit 96899260add89bb541c5eef58460084a88de60be,
``InstructScore.score``), where the task names are ``mt_zh-en``, ``mt_en-de``, ``mt_en-ru``,
``mt_en-es``, ``caption``, ``d2t``, ``commonsense`` and ``keyword-to-text``. Quirks of the
original are kept on purpose, since the released checkpoints were trained on these exact strings:

* the caption prompt still says "The model generated translation is";
* the data-to-text prompt puts a newline inside the quotes after the output (``"{out}\\n".``);
* the keyword-to-text branch reuses the data-to-text (RDF-to-text) wording unchanged. The
  README calls the task 'key-to-text', and no keyword-to-text checkpoint was released.

The zh-en template is also byte-for-byte the one in /work/shared/reference/instructscore.md.
"""

from __future__ import annotations

_TAIL_TRANSLATION = (
    "Please identify all errors within each model output, up to a maximum of five. For each "
    "error, please give me the corresponding error type, major/minor label, error location of "
    "the model generated translation and explanation for the error. Major errors can confuse or "
    "mislead the reader due to significant change in meaning, while minor errors don't lead to "
    "loss of meaning but will be noticed."
)
# The data-to-text and keyword-to-text prompts also ask for an error dimension.
_TAIL_OUTPUT_WITH_DIMENSION = (
    "Please identify all errors within each model output, up to a maximum of five. For each "
    "error, please give me the corresponding error dimension, error type, major/minor label, "
    "error location of the model generated output and explanation for the error. Major errors "
    "can confuse or mislead the reader due to significant change in meaning, while minor errors "
    "don't lead to loss of meaning but will be noticed."
)
_TAIL_OUTPUT = (
    "Please identify all errors within each model output, up to a maximum of five. For each "
    "error, please give me the corresponding error type, major/minor label, error location of "
    "the model generated output and explanation for the error. Major errors can confuse or "
    "mislead the reader due to significant change in meaning, while minor errors don't lead to "
    "loss of meaning but will be noticed."
)


def _mt(direction: str) -> str:
    return (
        f"You are evaluating {direction} Machine translation task. The correct translation is "
        '"{ref}". The model generated translation is "{out}". ' + _TAIL_TRANSLATION
    )


_RDF_TO_TEXT = (
    'You are evaluating RDF-to-text task. The correct generation is "{ref}". The input of model '
    'is "{src}". The model generated output is "{out}\n". ' + _TAIL_OUTPUT_WITH_DIMENSION
)

# Filled with str.format, so braces inside a reference, output or source are left alone.
TEMPLATES: dict[str, str] = {
    "zh-en": _mt("Chinese-to-English"),  # InstructScore.py, task 'mt_zh-en'
    "en-de": _mt("English-to-German"),  # InstructScore.py, task 'mt_en-de'
    "en-ru": _mt("English-to-Russian"),  # InstructScore.py, task 'mt_en-ru'
    "en-es": _mt("English-to-Spanish"),  # InstructScore.py, task 'mt_en-es'
    # InstructScore.py, task 'caption'
    "caption": (
        'You are evaluating image captioning. The correct generation is "{ref}". The model '
        'generated translation is "{out}". ' + _TAIL_TRANSLATION
    ),
    "data2text": _RDF_TO_TEXT,  # InstructScore.py, task 'd2t'
    # InstructScore.py, task 'commonsense' (the source comes first)
    "commonsense": (
        'You are evaluating commonsense text generation. The input of model is "{src}". One of '
        'the correct generations is "{ref}". The model generated output is "{out}". '
        + _TAIL_OUTPUT
    ),
    # InstructScore.py, task 'keyword-to-text': the same text as 'd2t' upstream
    "keyword-to-text": _RDF_TO_TEXT,
}

TASKS: tuple[str, ...] = tuple(TEMPLATES)
NEEDS_SOURCE: frozenset[str] = frozenset({"data2text", "commonsense", "keyword-to-text"})


def build_prompt(task: str, reference: str, candidate: str, source: str | None = None) -> str:
    """The InstructScore input for one (reference, candidate[, source]) triple.

    ``source`` is required for the tasks in NEEDS_SOURCE and ignored by the others, whose
    prompts have no place for it.
    """
    if task not in TEMPLATES:
        raise ValueError(f"task: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    for name, value in (("reference", reference), ("candidate", candidate)):
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if task in NEEDS_SOURCE:
        if source is None or not isinstance(source, str) or not source.strip():
            raise ValueError(f"source: task {task!r} needs a source")
    else:
        source = ""
    return TEMPLATES[task].format(ref=reference, out=candidate, src=source)
