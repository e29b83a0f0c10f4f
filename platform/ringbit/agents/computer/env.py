"""A MiniWoB++ environment (Farama `miniwob`, real Chromium via Selenium) shaped for the agent.

One MiniWoBEnv is one headless browser (~1 s to start, ~400 MiB). It validates task names,
measures browser seconds per step, can switch tasks in the same browser, and turns every Selenium
or driver failure into a `BrowserError` with a reason. After a BrowserError the env is marked
broken (`healthy` is False): the caller (the Ray actor pool) closes it and starts a new one, or
calls `restart()`; it is never retried in place.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import miniwob
import psutil
from miniwob.action import ActionSpaceConfig, ActionTypes
from miniwob.constants import ALL_POSSIBLE_KEYS, TYPING_MAX_LENGTH
from miniwob.fields import get_field_extractor
from miniwob.selenium_actions import execute_click_coords

from ringbit.agents.computer.actions import Action, to_miniwob
from ringbit.agents.computer.screen import format_screen

gymnasium.register_envs(miniwob)
log = logging.getLogger(__name__)

CHROME_BINARY = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# A hung page must fail, not hang: sync scripts obey the WebDriver script timeout.
SCRIPT_TIMEOUT_S = 20.0
PAGE_LOAD_TIMEOUT_S = 20.0
MINIWOB_EPISODE_S = 10.0  # core.EPISODE_MAX_TIME in miniwob's core.js: the benchmark's limit
_PREFIX = "miniwob/"
_VERSION = re.compile(r"-v\d+$")


def configure_browser() -> None:
    """Point miniwob at the Debian chromium + chromedriver. Both variables are set together
    (miniwob refuses one without the other; with neither, Selenium Manager goes to the network)."""
    os.environ.setdefault("MINIWOB_CHROME_BINARY", CHROME_BINARY)
    os.environ.setdefault("MINIWOB_CHROMEDRIVER", CHROMEDRIVER)


def browser_missing() -> str | None:
    """Why no browser can start here (a reason string), or None when chromium is usable."""
    configure_browser()
    for var in ("MINIWOB_CHROME_BINARY", "MINIWOB_CHROMEDRIVER"):
        path = Path(os.environ[var])
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{var}={path} is not an executable file (install chromium and chromium-driver)"
    return None


def task_names() -> list[str]:
    """Every MiniWoB++ task registered by the installed miniwob package ("click-button", ...)."""
    return sorted(_VERSION.sub("", k[len(_PREFIX):]) for k in gymnasium.registry
                  if k.startswith(_PREFIX))


def resolve_task(task: str) -> str:
    """The canonical task name for "click-button", "click-button-v1" or "miniwob/click-button-v1";
    ValueError listing close matches for anything else."""
    name = _VERSION.sub("", task.strip().removeprefix(_PREFIX))
    names = task_names()
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else "no close match"
    raise ValueError(f"unknown MiniWoB task {task!r} ({hint}; {len(names)} tasks in miniwob "
                     f"{miniwob.__version__}, see ringbit.agents.computer.env.task_names())")


class BrowserError(RuntimeError):
    """The browser or its driver failed (crashed, closed, hung). `reason` says how."""

    def __init__(self, reason: str):
        super().__init__(f"browser failed: {reason}")
        self.reason = reason


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _vital(procs: list[psutil.Process]) -> list[psutil.Process]:
    """chromedriver and the browser's main process: the ones whose death breaks the session.
    Chromium's helpers (`--type=renderer`, `utility`, ...) come and go as pages load (a
    navigation swaps renderers), so they say nothing about the browser's health."""
    out = []
    for proc in procs:
        try:
            if not any(arg.startswith("--type=") for arg in proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            pass  # a helper that already exited
    return out


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _profile_dirs(procs: list[psutil.Process]) -> list[str]:
    """The temporary folders of this browser: the profile (--user-data-dir) chromedriver made
    and the folder its SingletonSocket link points to."""
    out = set()
    for proc in procs:
        try:
            for arg in proc.cmdline():
                folder = arg.partition("--user-data-dir=")[2]
                if folder and Path(folder).name.startswith(("org.chromium.", ".org.chromium.")):
                    out.add(folder)
                    socket = Path(folder) / "SingletonSocket"
                    if socket.is_symlink():
                        out.add(str(Path(os.readlink(socket)).parent))
        except psutil.Error:
            pass
    return sorted(out)


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    first = msg[0].removeprefix("Message: ").strip() if msg else ""
    return f"{type(exc).__name__}: {first}"[:300]


# (placeholders by ref, refs of selected multi-select options, drop-down options by ref)
Extras = tuple[dict[int, str], frozenset[int], dict[int, list[str]]]


@dataclass
class Observation:
    """What the agent sees: the instruction, its fields and the DOM elements (miniwob's dicts)."""

    utterance: str
    fields: list[tuple[str, str]]
    elements: list[dict[str, Any]]
    placeholders: dict[int, str] = field(default_factory=dict)
    selected: frozenset[int] = frozenset()  # selected options of multi-select lists
    options: dict[int, list[str]] = field(default_factory=dict)  # drop-down list ref -> options

    @classmethod
    def from_miniwob(cls, obs: dict[str, Any], extras: Extras | None = None):
        placeholders, selected, options = extras or ({}, frozenset(), {})
        return cls(str(obs.get("utterance", "")), [tuple(f) for f in obs.get("fields", ())],
                   list(obs.get("dom_elements", ())), placeholders, selected, options)

    def screen(self, disabled: Collection[int] = ()) -> list[str]:
        """The screen lines (see screen.format_screen) without the `disabled` ids."""
        return format_screen(self.elements, disabled, self.placeholders, self.selected,
                             self.options)

    def element(self, ref: int) -> dict[str, Any] | None:
        for el in self.elements:
            if int(el["ref"]) == ref:
                return el
        return None


@dataclass
class StepResult:
    """One agent action's outcome. reward is MiniWoB's time-discounted reward, raw_reward the
    undiscounted one (1 = success); both are 0 until the episode is done."""

    obs: Observation
    reward: float
    raw_reward: float
    done: bool
    reason: str | None
    browser_s: float


def _action_config() -> ActionSpaceConfig:
    # Only what the agent uses; every key MiniWoB can press (actions.to_miniwob indexes into it).
    return ActionSpaceConfig(
        action_types=[ActionTypes.NONE, ActionTypes.CLICK_ELEMENT, ActionTypes.PRESS_KEY,
                      ActionTypes.TYPE_TEXT, ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT],
        allowed_keys=ALL_POSSIBLE_KEYS, text_max_len=max(TYPING_MAX_LENGTH, 256))


# What miniwob's DOM info leaves out but a user sees: placeholders, selected list options and
# the options of drop-down lists (miniwob reports a <select> without its <option>s).
_EXTRAS_JS = """var placeholders = {}, selected = [], options = {};
for (var k in core.previousDOMInfo) {
  var e = core.previousDOMInfo[k];
  if (!e) continue;
  if (e.placeholder) placeholders[k] = String(e.placeholder);
  if (e.tagName === 'OPTION' && e.selected && e.parentElement && e.parentElement.multiple)
    selected.push(+k);
  if (e.tagName === 'SELECT' && !e.multiple)
    options[k] = Array.prototype.map.call(e.options, function (o) { return o.text; });
}
return [placeholders, selected, options];"""
_CENTER_JS = """var e = core.previousDOMInfo[arguments[0]];
if (!e) return null;
e.scrollIntoView({block: 'nearest', inline: 'nearest'});
var r = e.getBoundingClientRect();
return [r.left + r.width / 2, r.top + r.height / 2];"""


class MiniWoBEnv:
    """One headless Chromium running MiniWoB++ tasks.

    episode_max_s: MiniWoB ends an episode after 10 s (raw reward -1, reason "timed out"),
    and the time the LLM thinks counts. None keeps the benchmark's limit; a number overrides it
    from the next reset on (slow models need it; success is judged on the raw, undiscounted
    reward, but the reported reward is still discounted over this limit)."""

    def __init__(self, task: str = "click-button", *, episode_max_s: float | None = None):
        self.task = resolve_task(task)
        self.episode_max_s = episode_max_s
        self.browser_s = 0.0
        self.broken: str | None = None
        self._env: Any = None
        self._obs: Observation | None = None
        self._held: set[str] = set()
        self._procs: list[psutil.Process] = []
        self._vital: list[psutil.Process] = []
        self._profiles: list[str] = []
        self._start()

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        missing = browser_missing()
        if missing:
            raise BrowserError(missing)
        start = time.perf_counter()
        try:
            self._env = gymnasium.make(f"{_PREFIX}{self.task}-v1",
                                       action_space_config=_action_config())
            self.unwrapped.set_record_screenshots(False)  # the agent reads the DOM only
            driver = self.unwrapped.instance.driver
            driver.set_script_timeout(SCRIPT_TIMEOUT_S)
            driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
            self._procs = _process_tree(driver.service.process.pid)
            self._vital = _vital(self._procs)
            self._profiles = _profile_dirs(self._procs)
        except Exception as exc:  # selenium, driver start, page load
            self.broken = _reason(exc)
            raise BrowserError(f"could not start the browser: {self.broken}") from exc
        finally:
            self.browser_s += time.perf_counter() - start
        self.broken = None

    @property
    def unwrapped(self) -> Any:
        """The miniwob MiniWoBEnvironment (its `.instance.driver` is the Selenium driver)."""
        return self._env.unwrapped

    @property
    def browser_pids(self) -> list[int]:
        """chromedriver and the browser processes it started (for monitoring and cleanup)."""
        return [p.pid for p in self._procs]

    @property
    def healthy(self) -> bool:
        """Not known broken, and chromedriver and the browser are still running (a browser that
        died between episodes is found here, before an episode is spent on it)."""
        return (self.broken is None and self._env is not None
                and all(_alive(p) for p in self._vital))

    def restart(self) -> None:
        """Close the browser (if any) and start a fresh one on the same task."""
        self.close()
        self._start()

    def close(self) -> None:
        """Quit the browser; safe on a crashed or already closed one. If chromedriver died,
        `quit` cannot reach the browser, so the processes recorded at start are killed (only
        those: psutil checks they are still the same processes)."""
        if self._env is None:
            return
        if not self._procs or _alive(self._procs[0]):  # chromedriver can still quit it
            try:
                self._env.close()
            except Exception as exc:
                log.debug("closing a broken browser: %s", _reason(exc))
        alive = [p for p in self._procs if _alive(p)]
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        # chromedriver deletes the profile on quit, but not when it is dead, and Chromium's
        # singleton-socket folder is left behind either way: a pool restarts browsers often.
        for folder in self._profiles:
            if Path(folder).name.startswith(("org.chromium.", ".org.chromium.")):
                shutil.rmtree(folder, ignore_errors=True)
        self._env = None
        self._procs, self._vital, self._profiles = [], [], []
        self._held.clear()

    def __enter__(self) -> MiniWoBEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, exc: BaseException) -> BrowserError:
        self.broken = _reason(exc)
        return BrowserError(self.broken)

    def _check(self) -> None:
        if self._env is None:
            raise BrowserError("the browser is closed")
        if self.broken:
            raise BrowserError(f"the browser is broken ({self.broken}); restart it")

    # -- tasks -------------------------------------------------------------------------------
    def set_task(self, task: str) -> None:
        """Switch to another task in the same browser (a page load, not a new browser)."""
        name = resolve_task(task)
        if name == self.task:
            return
        if name.startswith("flight.") or self.task.startswith("flight."):
            self.close()  # FlightWoB uses another window size and an HTTP server
            self.task = name
            self._start()
            return
        self._check()
        inst = self.unwrapped.instance
        url = inst.url.rsplit("/", 1)[0] + f"/{name}.html"
        start = time.perf_counter()
        try:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support import expected_conditions as ec
            from selenium.webdriver.support.wait import WebDriverWait

            inst.driver.get(url)
            WebDriverWait(inst.driver, 5).until(
                ec.element_to_be_clickable((By.ID, inst.SYNC_SCREEN_ID)))
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            self.browser_s += time.perf_counter() - start
        inst.url = url
        inst.field_extractor = get_field_extractor(name)
        self.unwrapped.subdomain = name
        self.task = name
        self._obs = None

    # -- episodes ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        """Start a new episode; the same seed gives the same task instance (and element refs)."""
        self._check()
        start = time.perf_counter()
        try:
            driver = self.unwrapped.instance.driver
            if self._held:
                from selenium.webdriver.common.action_chains import ActionChains

                ActionChains(driver).reset_actions()  # releases held modifiers
                self._held.clear()
            limit_s = self.episode_max_s or MINIWOB_EPISODE_S
            driver.execute_script(f"core.EPISODE_MAX_TIME = {int(limit_s * 1000)};")
            obs, _info = self._env.reset(seed=seed)
            self._obs = Observation.from_miniwob(obs, self._extras())
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            self.browser_s += time.perf_counter() - start
        return self._obs

    @property
    def observation(self) -> Observation | None:
        """The latest observation (None before the first reset)."""
        return self._obs

    @property
    def held(self) -> frozenset[str]:
        """Modifiers held down by `hold` actions ("CTRL", "SHIFT")."""
        return frozenset(self._held)

    def step(self, action: Action) -> StepResult:
        """Carry out one agent action (which may be several MiniWoB actions, e.g. press x 3)."""
        self._check()
        create = self.unwrapped.create_action
        current = None
        if action.kind == "enter" and self._obs is not None:
            el = self._obs.element(int(action.ref or 0))
            current = str(el.get("value") or "") if el else None
        start = time.perf_counter()
        try:
            if action.kind in ("hold", "release"):
                self._modifier(action)
                batch = [create(ActionTypes.NONE)]
            elif action.kind == "click" and self._held:
                self._pointer_click(int(action.ref or 0))
                batch = [create(ActionTypes.NONE)]
            else:
                batch = to_miniwob(action, create, current_value=current)
            for mw_action in batch:
                obs, reward, done, _trunc, info = self._env.step(mw_action)
                if done:
                    break
            extras = None if done else self._extras()
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            elapsed = time.perf_counter() - start
            self.browser_s += elapsed
        self._obs = Observation.from_miniwob(obs, extras)
        return StepResult(self._obs, float(reward), float(info.get("raw_reward") or 0.0),
                          bool(done), info.get("reason"), elapsed)

    # -- helpers -----------------------------------------------------------------------------
    def _extras(self) -> Extras:
        placeholders, selected, options = self.unwrapped.instance.driver.execute_script(_EXTRAS_JS)
        return ({int(k): str(v) for k, v in (placeholders or {}).items()},
                frozenset(int(r) for r in selected or ()),
                {int(k): [str(o) for o in v] for k, v in (options or {}).items()})

    def _modifier(self, action: Action) -> None:
        # WebDriver input state keeps a key pressed across action sequences until it is released,
        # so later pointer clicks carry the modifier (ctrl+click in multi-select lists).
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        key = Keys.CONTROL if action.key == "CTRL" else Keys.SHIFT
        chain = ActionChains(self.unwrapped.instance.driver, duration=0)
        if action.kind == "hold":
            chain.key_down(key).perform()
            self._held.add(str(action.key))
        else:
            chain.key_up(key).perform()
            self._held.discard(str(action.key))

    def _pointer_click(self, ref: int) -> None:
        # A real pointer click at the element's centre (scrolled into view): MiniWoB's
        # CLICK_ELEMENT is a synthetic JS click that ignores held modifier keys.
        driver = self.unwrapped.instance.driver
        center = driver.execute_script(_CENTER_JS, ref)
        if center is not None:
            execute_click_coords(float(center[0]), float(center[1]), driver)
