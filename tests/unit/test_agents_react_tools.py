"""Offline search tools: BM25 over a tiny local corpus, the query->result cache with its BM25
fallback, cache files and `load_tools`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringbit.agents.react.tools import (NO_RESULTS, BM25Search, CachedSearch, Tool,
                                        build_search_cache, first_sentences, load_tools,
                                        normalize_query, read_search_cache, write_search_cache)
from ringbit.agents.react.trajectories import Step, Trajectory

CORPUS = [
    {"title": "Milhouse Van Houten", "text": "Milhouse Mussolini Van Houten is a fictional "
     "character in The Simpsons. He was named after U.S. president Richard Nixon. He is Bart's "
     "best friend."},
    {"title": "High Plains", "text": "The High Plains are a subregion of the Great Plains. They "
     "rise from around 1,800 to 7,000 ft. Rain is scarce."},
    {"title": "The Saimaa Gesture", "text": "The Saimaa Gesture is a 1981 film about three Finnish "
     "rock groups on Lake Saimaa. It was directed by Aki Kaurismaki."},
    {"text": "Elia Kazan was an actor, director, producer and screenwriter."},
]


@pytest.fixture()
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in CORPUS))
    return path


def test_bm25_search_tiny_corpus(corpus_file):
    search = BM25Search.from_jsonl(corpus_file)
    assert isinstance(search, Tool) and search.name == "search"
    assert search("Milhouse named after who?") == ("Milhouse Mussolini Van Houten is a fictional "
                                                   "character in The Simpsons. He was named after "
                                                   "U.S. president Richard Nixon.")
    assert search("elevation of the high plains").startswith("The High Plains are a subregion")
    assert search("Finnish rock groups documentary").startswith("The Saimaa Gesture is a 1981")
    assert search("Elia Kazan profession") == CORPUS[3]["text"]
    assert search("zebra quantum") == NO_RESULTS
    assert search("   ") == NO_RESULTS
    assert [p["title"] for p, _ in search.search("Saimaa plains", k=5)][:2] in (
        ["The Saimaa Gesture", "High Plains"], ["High Plains", "The Saimaa Gesture"])
    assert BM25Search([])("anything") == NO_RESULTS


def test_bm25_two_documents():
    # rank_bm25's own idf is 0 for a word in 1 of 2 documents; ours must still rank.
    search = BM25Search([{"text": "Cats purr."}, {"text": "Dogs bark."}], n_sentences=1)
    assert search("dogs") == "Dogs bark."


def test_first_sentences():
    text = "Born in the U.S. in 1950. He moved. Then he left!"
    assert first_sentences(text, 1) == "Born in the U.S. in 1950."
    assert first_sentences(text, 2) == "Born in the U.S. in 1950. He moved."


def test_cached_search_exact_fallback_miss():
    cache = {"Who is Milhouse named after?": "Richard Nixon",
             "elevation range of the High Plains": "around 1,800 to 7,000 ft",
             "Nicholas Ray profession": "Film director, screenwriter, actor.",
             "no snippet query": None}
    search = CachedSearch(cache)
    assert len(search) == 4
    assert search.lookup("who is  milhouse named after") == ("Richard Nixon", "exact",
                                                             "who is milhouse named after")
    assert search("no snippet query") == "None"
    result, how, match = search.lookup("High Plains elevation?")
    assert (result, how, match) == ("around 1,800 to 7,000 ft", "bm25",
                                    "elevation range of the high plains")
    assert search.lookup("quantum chromodynamics") == (NO_RESULTS, "miss", None)
    strict = CachedSearch(cache, fallback=False)
    assert strict("High Plains elevation?") == NO_RESULTS
    assert CachedSearch({})("anything") == NO_RESULTS
    assert normalize_query(" Who is X? ") == "who is x"


def test_build_search_cache_from_trajectories():
    trajs = [Trajectory.from_steps("Q1", [
        Step("t", "search[Alpha query]", "alpha result"),
        Step("t", "search[Beta], search[Gamma]", "beta result"),
        Step("t", "finish[A]", "Episode finished, reward = True")]),
        Trajectory.from_steps("Q2", [Step("t", "search[Alpha query]", "later result"),
                                     Step("t", "finish[B]", "Episode finished, reward = True")])]
    assert build_search_cache(trajs) == {"Alpha query": "alpha result", "Beta": "beta result"}


def test_cache_files_and_load_tools(tmp_path, corpus_file):
    cache = {"q one": "r one", "q two": None}
    write_search_cache(tmp_path / "c.jsonl", cache)
    assert read_search_cache(tmp_path / "c.jsonl") == cache
    (tmp_path / "fireact.json").write_text(json.dumps(cache, indent=2))  # FireAct's search.json
    assert read_search_cache(tmp_path / "fireact.json") == cache
    (tmp_path / "list.json").write_text(json.dumps([{"query": "q", "observation": "o"}]))
    assert read_search_cache(tmp_path / "list.json") == {"q": "o"}
    (tmp_path / "one.jsonl").write_text(json.dumps({"query": "q", "result": "r"}) + "\n")
    assert read_search_cache(tmp_path / "one.jsonl") == {"q": "r"}

    tools = load_tools({"search": f"cache:{tmp_path / 'c.jsonl'}", "wiki": f"bm25:{corpus_file}"})
    assert isinstance(tools["search"], CachedSearch) and tools["search"]("Q ONE") == "r one"
    assert isinstance(tools["wiki"], BM25Search) and tools["wiki"].name == "wiki"
    for bad in ({"search": "google:x"}, {"search": "/no/scheme.jsonl"}, {"search": "cache:"}):
        with pytest.raises(ValueError):
            load_tools(bad)
