"""A pool of browser actors on the Ray cluster: each actor owns one headless Chromium running
MiniWoB++ and plays whole episodes of the computer-control agent, streaming the trajectory's
events back as they happen. A browser that crashes is replaced; its episode is reported failed
with the reason, never left hanging."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import ray

from ringbit.train.resources import PlacementTimeout

EventFn = Callable[[dict[str, Any]], None]


class BrowserWorker:
    """One Chromium, reused across episodes of the same task (a new task starts a new browser)."""

    def __init__(self) -> None:
        self.env = None
        self.task: str | None = None

    def _env_for(self, task: str, episode_max_s: float | None):
        from ringbit.agents.computer.env import MiniWoBEnv

        if self.env is None or not self.env.healthy or self.task != task \
                or self.env.episode_max_s != episode_max_s:
            self.close()
            self.env, self.task = MiniWoBEnv(task, episode_max_s=episode_max_s), task
        return self.env

    def close(self) -> None:
        if self.env is not None:
            try:
                self.env.close()
            except Exception:  # a crashed browser may not close cleanly; it is dropped anyway
                pass
        self.env, self.task = None, None

    def play(self, task: str, seed: int, llm: dict[str, Any], trials: int, max_steps: int,
             episode_max_s: float | None = None, reflection: bool = True,
             max_tokens: tuple[int, int] = (256, 96)) -> Iterator[dict]:
        """A Ray streaming generator: every event of the episode, then {"type": "result", ...}."""
        from ringbit.agents.computer.agent import run_episode
        from ringbit.agents.llm import build_agent_llm
        from ringbit.agents.config import AgentLLMConfig

        events: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}
        seen: list[dict[str, Any]] = []  # the whole event stream (every screen the planner saw)

        def emit(event: dict[str, Any]) -> None:
            seen.append(event)
            events.put(event)

        def episode() -> None:
            agent_llm = build_agent_llm(AgentLLMConfig(**llm), check=False)
            try:
                env = self._env_for(task, episode_max_s)
                result = run_episode(env, agent_llm, task, seed, max_trials=trials, max_steps=max_steps,
                                     on_event=emit, reflection=reflection, plan_max_tokens=max_tokens[0],
                                     reflect_max_tokens=max_tokens[1]).to_dict()
            except Exception as exc:  # browser failed to start, or the agent itself broke
                result = {"task": task, "seed": seed, "success": False, "trials": [],
                          "error": f"browser failed: {type(exc).__name__}: {exc}"}
            if result.get("error"):  # the browser may be broken: the next episode starts a new one
                self.close()
            result.update(agent_llm.usage.as_dict())
            result["events"] = seen
            outcome["result"] = result
            events.put(None)

        thread = threading.Thread(target=episode, daemon=True)
        thread.start()
        while (event := events.get()) is not None:
            yield event
        thread.join()
        yield {"type": "result", **outcome["result"]}

    def demonstrate(self, task: str, seed: int, reflection: bool, max_steps: int) -> dict[str, Any]:
        """One demonstration episode (ringbit.agents.computer.demos.demonstrate) in this browser."""
        from ringbit.agents.computer.demos import demonstrate

        try:
            result = demonstrate(self._env_for(task, None), task, seed, reflection=reflection,
                                 max_steps=max_steps)
        except Exception as exc:  # the browser failed to start, or a solver broke
            result = {"task": task, "seed": seed, "kind": "reflection" if reflection else "plan",
                      "success": False, "usable": False, "examples": [],
                      "error": f"{type(exc).__name__}: {exc}"}
        if result.get("error"):  # the browser may be broken: the next episode starts a new one
            self.close()
        return result

    def pid(self) -> int:
        import os

        return os.getpid()


class BrowserPoolUnschedulable(PlacementTimeout):
    """The pool's browser actors cannot all be placed on the cluster (not enough free CPU); a job
    ending on it prints the message alone, like the workers' placement timeout."""


class BrowserPool:
    """`size` browser actors; `run()` plays one episode on a free actor (blocking), `run_all()`
    plays many in parallel. Thread-safe: the Serve app and evaluation jobs call it from threads."""

    def __init__(self, size: int, cpus_per_browser: float = 0.5, start_timeout_s: float = 120) -> None:
        import os

        # Chromium and chromedriver paths travel with the actors (set by the README's setup).
        env_vars = {k: v for k, v in os.environ.items() if k.startswith("MINIWOB_")}
        self._remote = ray.remote(BrowserWorker).options(
            num_cpus=cpus_per_browser, max_concurrency=2,
            runtime_env={"env_vars": env_vars} if env_vars else None)
        self.size = size
        self.cpus_per_browser = cpus_per_browser
        self.start_timeout_s = start_timeout_s
        self._free: queue.Queue = queue.Queue()
        for _ in range(size):
            self._free.put(self._remote.remote())
        self.replaced = 0

    def _wait_started(self) -> None:
        """Every actor placed and running, or a BrowserPoolUnschedulable naming the fix: an actor
        the cluster has no CPU for stays pending, and a call to it would wait forever. The pool is
        emptied then (no actor has a browser yet: a browser starts with the first episode)."""
        actors = list(self._free.queue)
        try:
            ray.get([a.pid.remote() for a in actors], timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            while not self._free.empty():
                ray.kill(self._free.get_nowait())
            free, total = ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)
            raise BrowserPoolUnschedulable(
                f"{self.size} browser actors x {self.cpus_per_browser:g} CPU did not all start within "
                f"{self.start_timeout_s:g} s: the cluster has {free:g} of {total:g} CPUs free (Serve replicas and "
                "other jobs hold the rest). Use fewer browsers (--browsers), a smaller cpus_per_browser, "
                "or free CPUs (ringbit serve down APP, ringbit stop JOB)") from None

    def run(self, task: str, seed: int, llm: dict[str, Any], trials: int, max_steps: int,
            episode_max_s: float | None = None, on_event: EventFn | None = None,
            timeout_s: float = 1800, reflection: bool = True,
            max_tokens: tuple[int, int] = (256, 96)) -> dict[str, Any]:
        """Play one episode; the result dict carries `error` when it could not finish."""
        actor = self._free.get()
        began = time.perf_counter()
        try:
            gen = actor.play.options(num_returns="streaming").remote(task, seed, llm, trials, max_steps,
                                                                         episode_max_s, reflection, max_tokens)
            for ref in gen:
                event = ray.get(ref, timeout=max(1.0, timeout_s - (time.perf_counter() - began)))
                if event.get("type") == "result":
                    event.pop("type")
                    event["wall_s"] = time.perf_counter() - began
                    event["reflection"] = reflection
                    return event
                if on_event:
                    on_event(event)
            raise RuntimeError("the browser actor ended without a result")
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, RuntimeError) as exc:
            actor = self._replace(actor)
            return {"task": task, "seed": seed, "success": False, "trials": [], "reflection": reflection,
                    "error": f"browser actor failed: {type(exc).__name__}: {str(exc)[:500]}",
                    "wall_s": time.perf_counter() - began}
        finally:
            self._free.put(actor)

    def demonstrate(self, task: str, seed: int, reflection: bool = False, max_steps: int = 24,
                    timeout_s: float = 600) -> dict[str, Any]:
        """One demonstration episode on a free actor (see BrowserWorker.demonstrate)."""
        actor = self._free.get()
        began = time.perf_counter()
        try:
            result = ray.get(actor.demonstrate.remote(task, seed, reflection, max_steps), timeout=timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            actor = self._replace(actor)
            result = {"task": task, "seed": seed, "kind": "reflection" if reflection else "plan",
                      "success": False, "usable": False, "examples": [],
                      "error": f"browser actor failed: {type(exc).__name__}: {str(exc)[:500]}"}
        finally:
            self._free.put(actor)
        result["wall_s"] = time.perf_counter() - began
        return result

    def _replace(self, actor: Any) -> Any:
        """The actor died (Chromium took the process down, OOM) or hung: a new one in its place."""
        ray.kill(actor)
        self.replaced += 1
        return self._remote.remote()

    def run_all(self, episodes: list[dict[str, Any]], on_result: EventFn | None = None,
                method: str = "run") -> list[dict[str, Any]]:
        """Episodes (keyword arguments of `method`: run's {task, seed, llm, trials, max_steps,
        episode_max_s}, or demonstrate's) over all actors; results in input order."""
        self._wait_started()

        def one(ep: dict[str, Any]) -> dict[str, Any]:
            result = getattr(self, method)(**ep)
            if on_result:
                on_result(result)
            return result

        with ThreadPoolExecutor(self.size) as pool:
            return list(pool.map(one, episodes))

    def shutdown(self) -> None:
        while not self._free.empty():
            actor = self._free.get_nowait()
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:
                pass
            ray.kill(actor)
