"""MemWalker (arXiv 2310.05029): segmentation, memory tree, tree navigation with backtracking,
synthetic long documents and evaluation. The LLM is a scripted test double that reads the prompt;
no endpoint is involved."""

from __future__ import annotations

import json
import re

import pytest

from ringbit.agents.llm import FunctionLLM
from ringbit.agents.longdoc import (Fact, evaluate_memwalker, fact_depth, is_correct,
                                    make_document, make_eval_set, normalize_answer)
from ringbit.agents.memwalker import (MemTree, build_tree, navigate, parse_action, parse_leaf,
                                      segment)

KEY_IN_QUESTION = re.compile(r"for the (.+?)\?")
SUMMARY_LINE = re.compile(r"^Summary (\d+): (.*)$", re.MULTILINE)


class OracleNavigatorDouble:
    """Scripted LLM test double. Summarising: keeps the sentences with a digit (the planted
    facts), else the first sentence, so facts bubble up to the root. Navigating: picks the first
    numbered summary mentioning the question's key ("blue vault"), else "Action: -1". At a leaf:
    answers the code if the segment holds the fact, else goes back. `wrong_answer` makes every
    leaf answer that instead. Records every prompt."""

    def __init__(self, wrong_answer: str | None = None) -> None:
        self.wrong_answer = wrong_answer
        self.prompts: list[str] = []
        self.summaries = 0

    def __call__(self, prompt: str, stop: list[str] | None, max_tokens: int) -> str:
        self.prompts.append(prompt)
        if prompt.startswith("Summarize"):
            self.summaries += 1
            return self.summarise(prompt)
        if prompt.startswith("The following passage(s)"):
            return self.choose(prompt)
        if "Read the text in summary 0" in prompt:
            return self.read_leaf(prompt)
        return "unknown"

    @staticmethod
    def key(prompt: str) -> str:
        return KEY_IN_QUESTION.search(prompt).group(1)

    @staticmethod
    def summarise(prompt: str) -> str:
        body = re.search(r"(?:Passage|Summaries):\n(.*)\n\nSummary:$", prompt, re.S).group(1)
        sents = re.split(r"(?<=[.!?])\s+", " ".join(body.split()))
        facts = [s for s in sents if re.search(r"\d", s)]
        return " ".join(facts) if facts else sents[0]

    def choose(self, prompt: str) -> str:
        key = self.key(prompt)
        for idx, summary in SUMMARY_LINE.findall(prompt):
            if key in summary:
                return f"Summary {idx} mentions the {key}.\nAction: {idx}"
        return f"No summary mentions the {key}.\nAction: -1"

    def read_leaf(self, prompt: str) -> str:
        text = re.search(r"Summary 0:\n(.*)\n\nRead the text", prompt, re.S).group(1)
        key = self.key(prompt.split("Read the text", 1)[1])
        found = re.search(rf"for the {key} is (\d+)", text)
        if found is None:
            return f"The text does not mention the {key}.\nAction: -1"
        return f"The text gives the code.\nAnswer: {self.wrong_answer or found.group(1)}"


class ScriptedDouble(OracleNavigatorDouble):
    """Test double whose navigation replies come from a list (then fall back to the oracle)."""

    def __init__(self, nav_replies: list[str], leaf_replies: list[str] | None = None) -> None:
        super().__init__()
        self.nav_replies = list(nav_replies)
        self.leaf_replies = list(leaf_replies or [])

    def choose(self, prompt: str) -> str:
        return self.nav_replies.pop(0) if self.nav_replies else super().choose(prompt)

    def read_leaf(self, prompt: str) -> str:
        return self.leaf_replies.pop(0) if self.leaf_replies else super().read_leaf(prompt)


FACT = Fact("The access code for the blue vault is 7341.",
            "What is the access code for the blue vault?", "7341", depth=0.7)


@pytest.fixture(scope="module")
def document() -> str:
    return make_document(3000, [FACT], seed=3)


@pytest.fixture(scope="module")
def tree(document: str) -> MemTree:
    return build_tree(document, FunctionLLM(OracleNavigatorDouble()), segment_words=100, fanout=4)


def fact_leaf(tree: MemTree) -> int:
    return next(n.id for n in tree.leaves if FACT.sentence in n.text)


def paragraphs_of(n: int, words_each: int = 20) -> str:
    """n paragraphs, each of 4 five-word sentences: one paragraph per 20-word segment."""
    sent = "Alpha beta gamma delta epsilon."
    return "\n\n".join(" ".join([sent] * (words_each // 5)) for _ in range(n))


# ---------------------------------------------------------------------------------- segment

def test_segment_respects_bound_and_loses_no_text(document: str) -> None:
    segs = segment(document, 100)
    assert len(segs) >= 30
    assert all(len(s.split()) <= 100 for s in segs)
    assert " ".join(segs).split() == document.split()
    assert all(s.endswith(".") for s in segs)  # cut on sentence boundaries
    assert sum(s.count(FACT.sentence) for s in segs) == 1  # a fact is never cut in two


def test_segment_with_tokenizer_and_long_sentence() -> None:
    text = "Short one. " + " ".join(["word"] * 250) + ". Another short sentence.\n\nNew para."
    chars = lambda s: len(s) // 4  # noqa: E731 - a stand-in tokenizer: ~4 chars per token
    segs = segment(text, 50, count=chars)
    assert all(chars(s) <= 50 for s in segs)
    assert " ".join(segs).split() == text.split()
    words = segment(text, 100)
    assert all(len(s.split()) <= 100 for s in words) and len(words) >= 3
    assert "\n\n" in segment("One two.\n\nThree four.", 100)[0]  # paragraph breaks kept


def test_segment_and_build_reject_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        segment("   \n ", 100)
    with pytest.raises(ValueError, match="empty"):
        build_tree("", FunctionLLM(OracleNavigatorDouble()))
    with pytest.raises(ValueError, match="fanout"):
        build_tree("Some text.", FunctionLLM(OracleNavigatorDouble()), fanout=1)


# ---------------------------------------------------------------------------------- tree

def test_tree_levels_fanout_and_root() -> None:
    double = OracleNavigatorDouble()
    events: list[dict] = []
    tree = build_tree(paragraphs_of(25), FunctionLLM(double), segment_words=20, fanout=5,
                      on_event=events.append)
    assert [len(tree.level(lv)) for lv in range(tree.height)] == [25, 5, 1]
    root = tree.nodes[tree.root]
    assert root.level == 2 and root.parent is None and len(root.children) == 5
    assert all(len(n.children) == 5 for n in tree.level(1))
    assert all(n.text and n.is_leaf for n in tree.level(0))
    assert root.span == (0, 24)
    assert double.summaries == len(tree.nodes) == 31  # one summary call per node
    assert events[0] == {"event": "segmented", "segments": 25, "nodes": 31}
    assert [e["done"] for e in events[1:]] == list(range(1, 32))
    tree.validate()


def test_tree_groups_are_balanced_and_single_segment_is_a_leaf_root() -> None:
    llm = FunctionLLM(OracleNavigatorDouble())
    tree = build_tree(paragraphs_of(12), llm, segment_words=20, fanout=5)
    assert [len(n.children) for n in tree.level(1)] == [4, 4, 4]  # no one-child parents
    assert len(tree.nodes[tree.root].children) == 3
    single = build_tree("The access code for the red gate is 1111.", llm, segment_words=20)
    assert single.height == 1 and single.nodes[single.root].is_leaf
    walk = navigate(single, "What is the access code for the red gate?", llm)
    assert walk.answered and walk.answer == "1111" and walk.steps == 1


def test_tree_round_trip(tree: MemTree) -> None:
    data = json.loads(json.dumps(tree.to_dict()))
    again = MemTree.from_dict(data)
    assert again.to_dict() == tree.to_dict()
    llm = FunctionLLM(OracleNavigatorDouble())
    def moves(t: MemTree) -> list[tuple]:
        return [(p["node"], p["action"], p["target"]) for p in navigate(t, FACT.question, llm).path]

    assert moves(again) == moves(tree)  # the reloaded tree reads the same way
    assert navigate(again, FACT.question, llm).answer == "7341"
    data["nodes"][tree.root]["children"].append(999)
    with pytest.raises(ValueError, match="bad child"):
        MemTree.from_dict(data)


# ---------------------------------------------------------------------------------- navigate

def test_navigation_walks_root_to_fact_leaf(tree: MemTree) -> None:
    events: list[dict] = []
    walk = navigate(tree, FACT.question, FunctionLLM(OracleNavigatorDouble()),
                    on_event=events.append)
    assert walk.answered and walk.answer == "7341" and walk.error is None
    assert walk.backtracks == 0 and walk.steps == tree.height  # height-1 descents + answer
    targets = [p["target"] for p in walk.path if p["action"] == "descend"]
    assert targets[-1] == fact_leaf(tree)
    node = tree.root  # every move goes from a node to one of its children
    for p in walk.path[:-1]:
        assert p["node"] == node and p["target"] in tree.nodes[node].children
        node = p["target"]
    assert walk.path[-1]["action"] == "answer" and walk.path[-1]["node"] == fact_leaf(tree)
    assert events == walk.path  # every step was reported as it happened
    assert json.loads(json.dumps(walk.to_dict()))["answer"] == "7341"


def test_misleading_summary_backtracks_then_answers(tree: MemTree) -> None:
    tree = MemTree.from_dict(tree.to_dict())
    leaf = fact_leaf(tree)
    parent = tree.nodes[leaf].parent
    siblings = tree.nodes[parent].children
    assert siblings.index(leaf) > 0  # the fixture's depth puts the fact after a sibling
    decoy = siblings[siblings.index(leaf) - 1]
    tree.nodes[decoy].summary = "This part talks at length about the blue vault and its code."
    double = OracleNavigatorDouble()
    walk = navigate(tree, FACT.question, FunctionLLM(double))
    assert walk.answered and walk.answer == "7341"
    assert walk.backtracks == 1
    moves = [(p["node"], p["action"], p["target"]) for p in walk.path]
    assert moves[-4:] == [(parent, "descend", decoy), (decoy, "back", parent),
                          (parent, "descend", leaf), (leaf, "answer", None)]
    # Back at the parent only the unvisited children are offered, and the memory says why.
    back_at_parent = [p for p in double.prompts if p.startswith("The following")][-1]
    assert len(SUMMARY_LINE.findall(back_at_parent)) == len(siblings) - 1
    assert f"Node {decoy} (level 0) did not contain the answer." in double.prompts[-1]
    assert "Working memory" in double.prompts[-1]


def test_step_bound_ends_a_walk_that_never_answers(tree: MemTree) -> None:
    class NeverAnswers(OracleNavigatorDouble):
        def read_leaf(self, prompt: str) -> str:
            return "Not here.\nAction: -1"

        def choose(self, prompt: str) -> str:
            return "Reasoning: first.\nAction: 0"

    walk = navigate(tree, FACT.question, FunctionLLM(NeverAnswers()), max_steps=7)
    assert not walk.answered and walk.steps == 7 and "max_steps" in walk.error
    assert walk.path[-1]["action"] == "best_effort" and walk.answer == "unknown"
    # With a large budget the visited set still ends the walk: every node is left at most once.
    walk = navigate(tree, FACT.question, FunctionLLM(NeverAnswers()), max_steps=10_000,
                    best_effort=False)
    assert not walk.answered and walk.error.startswith("explored every branch")
    assert walk.steps <= 2 * len(tree.nodes) and walk.answer == ""
    assert walk.backtracks == len(tree.nodes) - 1  # each non-root node abandoned once


def test_always_going_back_at_internal_nodes_terminates(tree: MemTree) -> None:
    class GoesBack(OracleNavigatorDouble):
        def choose(self, prompt: str) -> str:
            return "Reasoning: none fits.\nAction: -1"

    walk = navigate(tree, FACT.question, FunctionLLM(GoesBack()), max_steps=500)
    assert not walk.answered and walk.steps < 500


def test_invalid_navigation_replies() -> None:
    tree = build_tree(paragraphs_of(4).replace("Alpha beta gamma delta epsilon.",
                                                "Filler words go here now.", 1)
                      + "\n\nThe access code for the blue vault is 7341.",
                      FunctionLLM(OracleNavigatorDouble()), segment_words=20, fanout=5)
    # Unusable, then valid on the retry: retried, not a fallback, right answer.
    double = ScriptedDouble(["I like the last one best.", "Action: 4"])
    walk = navigate(tree, FACT.question, FunctionLLM(double))
    assert walk.answered and walk.answer == "7341"
    assert walk.path[0]["retried"] and not walk.path[0]["fallback"]
    assert walk.path[0]["target"] == tree.nodes[tree.root].children[4]
    # Out of range and -1 at the root twice: the walker takes the first remaining child.
    double = ScriptedDouble(["Action: 9", "Action: -1"])
    walk = navigate(tree, FACT.question, FunctionLLM(double))
    assert walk.path[0]["retried"] and walk.path[0]["fallback"]
    assert walk.path[0]["target"] == tree.nodes[tree.root].children[0]
    assert walk.answered and walk.answer == "7341" and walk.backtracks == 1
    # An unusable leaf reply twice counts as "not here" and the walk moves on.
    double = ScriptedDouble(["Action: 0"], leaf_replies=["hmm", "still hmm"])
    walk = navigate(tree, FACT.question, FunctionLLM(double))
    assert walk.path[1]["action"] == "back" and walk.path[1]["fallback"]
    assert walk.answered and walk.answer == "7341"


def test_parsers() -> None:
    assert parse_action("Reasoning: x\nAction: 2", 3, True) == 2
    assert parse_action(" 1", 3, True) == 1
    assert parse_action("Action: 3", 3, True) is None
    assert parse_action("Action: -1", 3, True) == -1
    assert parse_action("Action: -1", 3, False) is None
    assert parse_action("I would revert to the parent.", 3, True) == -1
    assert parse_action("no idea", 3, True) is None
    assert parse_leaf("Reasoning: found.\nAnswer: 7341\nmore") == ("answer", "7341")
    assert parse_leaf("Not here. Action: -1") == ("back", "")
    assert parse_leaf("Answer: -1") == ("back", "")
    assert parse_leaf("who knows") is None


def test_navigate_validation_llm_errors_and_memory_ablation(tree: MemTree) -> None:
    llm = FunctionLLM(OracleNavigatorDouble())
    with pytest.raises(ValueError, match="question is empty"):
        navigate(tree, "  ", llm)
    with pytest.raises(ValueError, match="max_steps"):
        navigate(tree, FACT.question, llm, max_steps=0)

    def broken(prompt: str, stop: list[str] | None, max_tokens: int) -> str:
        raise ConnectionError("endpoint down")

    walk = navigate(tree, FACT.question, FunctionLLM(broken))
    assert not walk.answered and "endpoint down" in walk.error and walk.llm_calls == 1
    double = OracleNavigatorDouble()
    walk = navigate(tree, FACT.question, FunctionLLM(double), use_memory=False)
    assert walk.answered and not any("Working memory" in p for p in double.prompts)


# ---------------------------------------------------------------------------------- longdoc

def test_documents_plant_each_fact_once_at_its_depth() -> None:
    facts = [Fact("The access code for the red gate is 1111.",
                  "What is the access code for the red gate?", "1111", depth=0.0),
             Fact("The access code for the teal chest is 2222.",
                  "What is the access code for the teal chest?", "2222", depth=0.25),
             FACT,
             Fact("The access code for the green tower is 3333.",
                  "What is the access code for the green tower?", "3333", depth=1.0)]
    doc = make_document(2000, facts, seed=7)
    assert len(doc.split()) == 2000
    for f in facts:
        assert doc.count(f.sentence) == 1 and doc.count(f.answer) == 1
        assert abs(fact_depth(doc, f.sentence) - f.depth) <= 0.02
    assert make_document(2000, facts, seed=7) == doc
    assert make_document(2000, facts, seed=8) != doc
    with pytest.raises(ValueError):
        make_document(5, facts, seed=1)
    with pytest.raises(ValueError):
        Fact("x", "q?", "y", depth=1.5)


def test_documents_from_builtin_corpus_filler() -> None:
    doc = make_document(1500, [FACT], seed=1, filler="builtin:python-topics")
    assert len(doc.split()) == 1500 and doc.count(FACT.sentence) == 1
    assert doc.count("7341") == 1 and "vault" not in doc.replace(FACT.sentence, "")
    assert doc == make_document(1500, [FACT], seed=1, filler="builtin:python-topics")


def test_eval_set_is_deterministic_and_spread() -> None:
    rows = make_eval_set(4, 800, seed=0, distractors=2)
    assert rows == make_eval_set(4, 800, seed=0, distractors=2)
    assert rows != make_eval_set(4, 800, seed=1, distractors=2)
    assert [r["depth"] for r in rows] == [0.125, 0.375, 0.625, 0.875]
    for r in rows:
        assert set(r) >= {"document", "question", "answer", "depth"}
        assert r["document"].count(f"is {r['answer']}.") == 1
        assert r["document"].count("The access code") == 3
        key = KEY_IN_QUESTION.search(r["question"]).group(1)
        sentence = f"The access code for the {key} is {r['answer']}."
        assert abs(fact_depth(r["document"], sentence) - r["depth"]) <= 0.02


def test_answer_normalisation() -> None:
    assert normalize_answer("The Code is: 7341!") == "code is 7341"
    assert is_correct("It is 7341.", "7341") and not is_correct("17341", "7341")
    assert not is_correct("", "7341")


def test_evaluate_memwalker_oracle_and_wrong_doubles() -> None:
    examples = make_eval_set(3, 1200, seed=5, distractors=2)
    double = OracleNavigatorDouble()
    report = evaluate_memwalker(examples, FunctionLLM(double), segment_words=100, fanout=4)
    assert report["accuracy"] == 1.0 and report["answered_rate"] == 1.0
    assert report["trees_built"] == 3 and report["avg_backtracks"] == 0
    assert report["usage"]["llm_calls"] > 0 and len(report["rows"]) == 3
    assert all(r["correct"] and r["steps"] >= 2 for r in report["rows"])
    wrong = evaluate_memwalker(examples, FunctionLLM(OracleNavigatorDouble(wrong_answer="0000")),
                               segment_words=100, fanout=4)
    assert wrong["accuracy"] == 0.0 and wrong["answered_rate"] == 1.0


def test_evaluate_builds_one_tree_per_document() -> None:
    ex = make_eval_set(1, 600, seed=2)[0]
    double = OracleNavigatorDouble()
    report = evaluate_memwalker([ex, dict(ex), dict(ex)], FunctionLLM(double),
                                segment_words=100, fanout=3)
    tree = build_tree(ex["document"], FunctionLLM(OracleNavigatorDouble()), 100, 3)
    assert report["trees_built"] == 1 and double.summaries == len(tree.nodes)
    assert report["accuracy"] == 1.0


# -- the paper's baselines: the text cut to the window, BM25-retrieved segments ----------------
def test_truncation_keeps_the_first_words_and_paragraphs() -> None:
    from ringbit.agents.longdoc_baselines import truncate_words

    text = "a b c\n\nd e f\n\ng h"
    assert truncate_words(text, 4) == "a b c\n\nd"
    assert truncate_words(text, 100) == text
    with pytest.raises(ValueError):
        truncate_words(text, 0)


def test_baselines_find_the_fact_only_when_their_context_holds_it() -> None:
    from ringbit.agents.longdoc_baselines import answer_retrieved, answer_truncated

    fact = Fact("The access code for the teal vault is 4821.", "What is the access code for the teal vault?",
                "4821", depth=0.9)
    doc = make_document(2000, [fact], seed=3)
    ex = {"document": doc, "question": fact.question, "answer": fact.answer}

    def reader(prompt: str, stop: object, max_tokens: int) -> str:  # TEST DOUBLE: answers from its text
        text = prompt.split("Text:\n", 1)[1].split("\n\nQuestion:", 1)[0]
        return "4821" if fact.sentence in text else "I do not know"

    llm = FunctionLLM(reader)
    cut = answer_truncated(ex, llm, window_words=500)  # the fact sits at 90%: cut off
    assert not cut["correct"] and not cut["answer_in_context"] and cut["kept_fraction"] == 0.25
    assert cut["error"] is None and cut["answer"] == "I do not know"
    found = answer_retrieved(ex, llm, window_words=500, segment_words=100)
    assert found["correct"] and found["answer_in_context"] and len(found["segments"]) <= 5
    assert found["segments"] == sorted(found["segments"])  # in document order
    assert answer_truncated(ex, llm, window_words=5000)["correct"]  # a window that holds it all
    assert llm.usage.calls == 3  # one call per question and baseline


def test_memwalker_eval_config_lengths_and_methods() -> None:
    from pydantic import ValidationError

    from ringbit.agents.memwalker_config import MemWalkerEvalConfig

    assert MemWalkerEvalConfig(n_words=3000).n_words == [3000]
    assert MemWalkerEvalConfig(n_words=[1500, 6000]).methods == ["memwalker", "truncate", "retrieve"]
    with pytest.raises(ValidationError, match="100..1,000,000"):
        MemWalkerEvalConfig(n_words=[50])
    with pytest.raises(ValidationError):
        MemWalkerEvalConfig(methods=["rag"])
