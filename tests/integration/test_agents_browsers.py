"""The browser actor pool on a real local Ray cluster with real Chromium: episodes run on actors in
parallel and stream their events; a browser that crashes mid-episode, or an actor that dies, ends
that episode failed with the reason and is replaced, so the next episode runs normally.

The LLM is a TEST DOUBLE behind a real OpenAI-compatible HTTP endpoint (the actors call it like
any endpoint): it clicks the button the goal names, and can crash things while it "thinks"."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import psutil
import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="chromium/chromedriver not installed: run `make system-deps`")


class ClickTheNamedButtonDouble:
    """TEST DOUBLE for the LLM: plans `click id=N` for the button the goal quotes; `before_plan`
    runs first (used to crash the browser or the actor mid-episode)."""

    def __init__(self) -> None:
        self.before_plan: Callable[[], None] | None = None
        self.plans = 0

    def answer(self, prompt: str) -> str:
        if "Current screen:" not in prompt:
            return "I do not know."  # a reflection
        self.plans += 1
        if self.before_plan:
            hook, self.before_plan = self.before_plan, None
            hook()
        goal = re.search(r'Goal: Click on the "(.*?)" button', prompt)
        screen = prompt.split("Current screen:", 1)[1]
        for ref, text in re.findall(r"<button id=(\d+)[^>]*>(.*?)</button>", screen):
            if goal and text == goal.group(1):
                return f"click id={ref}"
        return "click id=9999"


@pytest.fixture(scope="module")
def llm_double():
    policy = ClickTheNamedButtonDouble()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": "click-double", "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = policy.answer(body["prompt"])
            self._send({"choices": [{"text": text, "index": 0, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": len(body["prompt"].split()),
                                  "completion_tokens": len(text.split())}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield policy, {"url": f"http://127.0.0.1:{server.server_port}", "model": "click-double", "retries": 0}
    server.shutdown()


@pytest.fixture(scope="module")
def pool(local_ray):
    from ringbit.agents.browsers import BrowserPool

    p = BrowserPool(2, cpus_per_browser=0.25)
    yield p
    p.shutdown()


def episode(llm: dict, seed: int) -> dict:
    return {"task": "click-button", "seed": seed, "llm": llm, "trials": 1, "max_steps": 2,
            "episode_max_s": 60}


def test_episodes_run_in_parallel_and_stream_events(pool, llm_double):
    _, llm = llm_double
    results = pool.run_all([episode(llm, s) for s in range(4)])
    assert [r["seed"] for r in results] == [0, 1, 2, 3]
    assert all(r["success"] and not r["error"] for r in results), [r.get("error") for r in results]
    assert all(r["llm_calls"] == 1 for r in results)  # one staged plan, executed, episode won
    events: list[dict] = []
    result = pool.run(**episode(llm, 5), on_event=events.append)
    assert result["success"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "plan" and "step" in kinds and kinds[-1] == "trial_end"


def chromium_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "chrom" in p.name().lower()]


def actor_pids(pool) -> list[int]:
    import ray

    actors = list(pool._free.queue)
    return ray.get([a.pid.remote() for a in actors])


def test_browser_crash_mid_episode_is_reported_and_replaced(pool, llm_double):
    policy, llm = llm_double
    pids = actor_pids(pool)

    def crash_browsers() -> None:  # while the LLM "thinks", every pooled Chromium dies
        for pid in pids:
            for proc in chromium_of(pid):
                proc.kill()

    policy.before_plan = crash_browsers
    failed = pool.run(**episode(llm, 7))
    assert not failed["success"] and failed["error"].startswith("browser"), failed.get("error")
    # Both actors get a fresh browser on their next episode.
    again = pool.run_all([episode(llm, 8), episode(llm, 9)])
    assert all(r["success"] for r in again), [r.get("error") for r in again]


def test_dead_actor_is_replaced(pool, llm_double):
    policy, llm = llm_double
    before = pool.replaced

    def kill_actors() -> None:
        for pid in actor_pids_snapshot:
            os.kill(pid, signal.SIGKILL)

    actor_pids_snapshot = actor_pids(pool)
    policy.before_plan = kill_actors
    failed = pool.run(**episode(llm, 11), timeout_s=120)
    assert not failed["success"] and "browser actor failed" in failed["error"]
    assert pool.replaced == before + 1
    # The other actor was killed too: its next episode fails, and is replaced; then all is well.
    results = [pool.run(**episode(llm, s), timeout_s=120) for s in (12, 13, 14)]
    assert results[-1]["success"] and pool.replaced == before + 2, [r.get("error") for r in results]


def test_a_pool_the_cluster_cannot_place_fails_with_the_fix_instead_of_waiting(local_ray, llm_double):
    import ray

    from ringbit.agents.browsers import BrowserPool, BrowserPoolUnschedulable

    _, llm = llm_double
    total = ray.cluster_resources()["CPU"]
    p = BrowserPool(1, cpus_per_browser=total + 1, start_timeout_s=5)  # more CPU than the cluster has
    try:
        with pytest.raises(BrowserPoolUnschedulable) as err:
            p.run_all([episode(llm, 0)])
        assert "did not all start within 5 s" in str(err.value) and "--browsers" in str(err.value)
    finally:
        p.shutdown()
