"""The two baselines MemWalker is compared with (arXiv 2310.05029, Sec. 4): a reader given the
text cut to its context window, and retrieval of the segments most like the question (BM25)
followed by one answer. Both make one LLM call per question, so accuracy and cost sit beside
MemWalker's tree navigation in the same evaluation."""

from __future__ import annotations

from typing import Any

from ringbit.agents.longdoc import is_correct
from ringbit.agents.memwalker import LLM, segment

READ_PROMPT = ("Read the text below and answer the question.\n\nText:\n{text}\n\n"
               "Question: {question}\nAnswer with the answer only.\nAnswer:")
ANSWER_STOP = ["\n\n", "\nQuestion:"]


def truncate_words(text: str, max_words: int) -> str:
    """The first `max_words` whitespace words of `text`, paragraph breaks kept: what fits a
    reader's window when the whole document does not."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    out, n = [], 0
    for para in text.split("\n\n"):
        words = para.split()
        if n + len(words) > max_words:
            if max_words - n > 0:
                out.append(" ".join(words[: max_words - n]))
            break
        out.append(" ".join(words))
        n += len(words)
    return "\n\n".join(out)


def retrieve_segments(segments: list[str], question: str, budget_words: int) -> list[int]:
    """Indices (in document order) of the best BM25 segments for `question` that fit
    `budget_words` together."""
    from ringbit.agents.react.tools import rank_passages

    chosen, used = [], 0
    for i in rank_passages(segments, question):
        n = len(segments[i].split())
        if used + n > budget_words:
            break
        chosen.append(i)
        used += n
    return sorted(chosen)


def _answer(llm: LLM, text: str, question: str, max_tokens: int) -> tuple[str, str | None]:
    try:
        reply = llm(READ_PROMPT.format(text=text, question=question), stop=ANSWER_STOP, max_tokens=max_tokens)
        return str(reply or "").strip(), None
    except Exception as exc:  # one failed call is one wrong answer, with the reason kept
        return "", f"{type(exc).__name__}: {exc}"


def answer_truncated(example: dict[str, Any], llm: LLM, window_words: int,
                     max_tokens: int = 32) -> dict[str, Any]:
    """The whole-context baseline: the document cut to `window_words`, one question."""
    doc = example["document"]
    kept = truncate_words(doc, window_words)
    answer, error = _answer(llm, kept, example["question"], max_tokens)
    return {"answer": answer, "correct": is_correct(answer, example["answer"]), "llm_calls": 1,
            "kept_fraction": len(kept.split()) / max(len(doc.split()), 1),
            "answer_in_context": example["answer"] in kept, "error": error}


def answer_retrieved(example: dict[str, Any], llm: LLM, window_words: int, segment_words: int,
                     max_tokens: int = 32) -> dict[str, Any]:
    """The retrieval baseline: BM25 over the document's segments (question as the query), the
    best ones that fit `window_words`, in document order, one question."""
    doc = example["document"]
    parts = segment(doc, segment_words)
    chosen = retrieve_segments(parts, example["question"], window_words)
    context = "\n\n".join(parts[i] for i in chosen)
    answer, error = _answer(llm, context, example["question"], max_tokens)
    return {"answer": answer, "correct": is_correct(answer, example["answer"]), "llm_calls": 1,
            "segments": chosen, "answer_in_context": example["answer"] in context, "error": error}
