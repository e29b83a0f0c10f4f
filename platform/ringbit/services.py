"""Local platform services: a Ray head node (dashboard + Jobs API) and an MLflow tracking server.

`up` starts both as background processes and records them in `<home>/services.json`; `down` stops
exactly the processes recorded there and never anything else (no `ray stop`, which would kill every
Ray cluster on the machine). Logs go to `<home>/logs/{ray,mlflow}.log`.

Facts this module relies on (checked with Ray 2.60 / MLflow 3.17):
- Ray token auth: `ray start --head` does not create a token; with RAY_AUTH_MODE=token it refuses to
  start unless one exists, so `up` creates ~/.ray/auth_token (or $RAY_AUTH_TOKEN_PATH) if missing.
- `ray start --block` keeps gcs_server, raylet, dashboard, ... as children in its process group, but
  Ray workers and job drivers call setsid/setpgid, so `down` also collects descendants and members
  of the head's session.
- SIGTERM to the whole Ray process group makes gcs_server hang in shutdown; SIGTERM to the head
  alone stops its children in order. The head's node drain on SIGTERM (up to 30 s while a job runs)
  is switched off, so `down` takes ~2-4 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psutil
import requests
from pydantic import BaseModel, Field, field_validator

SERVICES = ("ray", "mlflow")
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 2.0


class ServiceError(RuntimeError):
    """A service could not be started or checked; the message says what to do about it."""


# ---------------------------------------------------------------------------------- settings


def _default_home() -> Path:
    # Expanded here: pydantic does not run field validators on defaults.
    return Path(os.environ.get("RINGBIT_HOME") or "~/.ringbit").expanduser().resolve()


class PlatformSettings(BaseModel):
    """Where the local platform keeps its state and which ports its services use."""

    home: Path = Field(
        default_factory=_default_home,
        description="Platform home: services.json, logs/, mlflow/ (env RINGBIT_HOME, default ~/.ringbit).",
    )
    ray_port: int = Field(6379, ge=1, le=65535, description="Ray GCS port (env RINGBIT_RAY_PORT).")
    dashboard_port: int = Field(
        8265, ge=1, le=65535, description="Ray dashboard and Jobs API port (env RINGBIT_DASHBOARD_PORT)."
    )
    mlflow_port: int = Field(5000, ge=1, le=65535, description="MLflow tracking server port (env RINGBIT_MLFLOW_PORT).")
    num_cpus: int | None = Field(
        None, ge=0, description="CPUs the Ray head offers to tasks; None = all (env RINGBIT_NUM_CPUS)."
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Absolute, so services.json, the sqlite URI and the Ray temp-dir hash do not depend on cwd.
        return value.expanduser().resolve()

    @classmethod
    def from_env(cls, **overrides: Any) -> "PlatformSettings":
        """Settings from RINGBIT_* environment variables, then any non-None keyword overrides."""
        env_names = {
            "home": "RINGBIT_HOME",
            "ray_port": "RINGBIT_RAY_PORT",
            "dashboard_port": "RINGBIT_DASHBOARD_PORT",
            "mlflow_port": "RINGBIT_MLFLOW_PORT",
            "num_cpus": "RINGBIT_NUM_CPUS",
        }
        values: dict[str, Any] = {k: os.environ[v] for k, v in env_names.items() if os.environ.get(v)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def ray_address(self) -> str:
        return f"127.0.0.1:{self.ray_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


# ---------------------------------------------------------------------------------- Ray client auth


def ray_env() -> dict[str, str]:
    """Environment a Ray client (ray.init, JobSubmissionClient, serve) needs for this platform."""
    return {"RAY_AUTH_MODE": "token"}


def ensure_client_env() -> None:
    """Put ray_env() into os.environ; call before creating Ray clients."""
    os.environ.update(ray_env())


def _token_path() -> Path:
    # Same lookup order as Ray's token loader: RAY_AUTH_TOKEN, then RAY_AUTH_TOKEN_PATH, then default.
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _read_token() -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    with contextlib.suppress(OSError):
        return _token_path().read_text().strip() or None
    return None


def auth_headers() -> dict[str, str]:
    """HTTP headers for the Ray dashboard / Jobs REST API; {} when no token exists."""
    token = _read_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _ensure_token() -> None:
    # What `ray get-auth-token --generate` does, but honouring RAY_AUTH_TOKEN_PATH.
    if _read_token():
        return
    path = _token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


# ---------------------------------------------------------------------------------- state file


def _state_path(settings: PlatformSettings) -> Path:
    return settings.home / "services.json"


def _log_path(settings: PlatformSettings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def _ray_temp_dir(settings: PlatformSettings) -> str:
    # Short and per-home: Ray puts unix sockets under it (paths must stay < 107 chars), and a
    # private temp dir keeps this cluster's session files apart from /tmp/ray of other clusters.
    digest = hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]
    return f"/tmp/ringbit-ray-{digest}"


def _load_state(settings: PlatformSettings) -> dict[str, dict]:
    path = _state_path(settings)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{path} is corrupt ({exc}); stop the services by hand and delete it.") from None


def _save_state(settings: PlatformSettings, state: dict[str, dict]) -> None:
    path = _state_path(settings)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written file


@contextlib.contextmanager
def _locked(settings: PlatformSettings) -> Iterator[None]:
    # Two `ringbit up`/`down` at once would otherwise both start (or stop) the same services.
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / ".services.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------------------------- processes


def _alive(entry: dict | None) -> bool:
    """True if the recorded process still runs and is the one we started (not a reused pid)."""
    if not entry:
        return False
    try:
        proc = psutil.Process(entry["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(entry["pid"])
            return False
        return _same_process(entry, proc)
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    # A process started by this Python process stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _same_process(entry: dict, proc: psutil.Process) -> bool:
    return abs(proc.create_time() - entry["create_time"]) < 1.0


def _family(entry: dict) -> list[psutil.Process]:
    """The recorded process, its descendants, and everything else still in its session.

    start_new_session=True made the process a session leader; Ray workers and job drivers change
    their process group (so killpg misses them) but stay its descendants or keep its session id.
    Linux does not reuse a pid while it is still some process's session id, so members found by
    session id are ours -- unless the pid now belongs to a new process, then we touch nothing.
    """
    pid = entry["pid"]
    procs: dict[int, psutil.Process] = {}
    try:
        leader = psutil.Process(pid)
        if not _same_process(entry, leader):
            return []
        procs[pid] = leader
        procs.update({p.pid: p for p in leader.children(recursive=True)})
    except psutil.NoSuchProcess:
        pass  # leader gone; children it left behind still carry its session id
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if other.pid not in procs and os.getsid(other.pid) == pid:
                procs[other.pid] = other
    return [p for p in procs.values() if _running(p)]


def _stop(name: str, entry: dict, timeout: float = STOP_TIMEOUT_S) -> dict | None:
    """SIGTERM, wait up to `timeout`, SIGKILL what is left; None if nothing of it was running."""
    pid = entry["pid"]
    procs = _family(entry)
    if not procs:
        _reap(pid)
        return None
    leader_alive = any(p.pid == pid for p in procs)
    if not leader_alive:  # orphans of a dead leader: ask each one
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if leader_alive and name == "ray":
            # The head alone: it stops raylet, gcs_server, dashboard, ... in order. SIGTERM to the
            # whole group instead made gcs_server hang in shutdown until the head's 30 s timeout.
            os.kill(pid, signal.SIGTERM)
        elif leader_alive:
            os.killpg(pid, signal.SIGTERM)  # mlflow server and its uvicorn worker
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        _reap(pid)
        time.sleep(0.2)
    # Second look catches processes spawned while shutting down (e.g. a worker started late).
    leftovers = {p.pid: p for p in procs + _family(entry) if _running(p)}
    for proc in leftovers.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(leftovers.values()), timeout=5)
    _reap(pid)
    return {"pid": pid, "forced": bool(leftovers)}


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _launch(settings: PlatformSettings, name: str, cmd: list[str], env: dict[str, str]) -> dict:
    log = _log_path(settings, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:  # fresh log per start, so a failure's tail is about this start
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=settings.home,
            start_new_session=True,  # own session/group: survives the CLI, and down can find it all
        )
    return {
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": cmd,
        "log": str(log),
    }


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _log_tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = _ANSI.sub("", Path(path).read_text(errors="replace"))  # Ray logs in colour
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------- ports


_PORT_HINTS = {
    "ray_port": ("Ray GCS", "RINGBIT_RAY_PORT=<port> (or `ringbit --ray-port <port> up`)"),
    "dashboard_port": ("Ray dashboard", "RINGBIT_DASHBOARD_PORT=<port> (or `ringbit --dashboard-port <port> up`)"),
    "mlflow_port": ("MLflow", "RINGBIT_MLFLOW_PORT=<port> (or `ringbit --mlflow-port <port> up`)"),
}


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers of a stopped server
        # do not count as "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _holder(port: int) -> str:
    """' (pid N: name)' of a process listening on the port, if we may see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" (pid {conn.pid}: {psutil.Process(conn.pid).name()})"
    return ""


def _check_ports(settings: PlatformSettings, field: str) -> None:
    port = getattr(settings, field)
    # The GCS listens on all interfaces; the dashboard and MLflow only on 127.0.0.1.
    host = "" if field == "ray_port" else "127.0.0.1"
    if not _port_free(port, host):
        what, knob = _PORT_HINTS[field]
        raise ServiceError(
            f"port {port} for the {what} is already in use by a process ringbit did not start"
            f"{_holder(port)}. Set {knob} to a free port, or stop the other process."
        )


# ---------------------------------------------------------------------------------- services


def _ray_command(settings: PlatformSettings, temp_dir: str) -> list[str]:
    cmd = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
        "--port", str(settings.ray_port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(settings.dashboard_port),
        # Ray 2.60 replaces 127.0.0.1 by the machine's routable IP anyway; kept as the intent.
        "--node-ip-address", "127.0.0.1",
        "--include-dashboard", "true",
        # Ray's fixed defaults (agent 52365, client server 10001) collide with any other cluster on
        # this machine: the agent then silently loses its HTTP server (Jobs API breaks) and the
        # client server shares 10001 via SO_REUSEPORT. 0 lets the agent pick; the client port
        # must be >= 1024, so pick a free one.
        "--dashboard-agent-listen-port", "0",
        "--ray-client-server-port", str(_free_port()),
        "--disable-usage-stats",
        "--temp-dir", temp_dir,
    ]
    if settings.num_cpus is not None:
        cmd += ["--num-cpus", str(settings.num_cpus)]
    return cmd


def _mlflow_command(settings: PlatformSettings) -> list[str]:
    store = settings.home / "mlflow"
    return [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(settings.mlflow_port),
        # One worker and no job runner: ~0.5 GB instead of ~3 GB. The default security middleware
        # already accepts localhost/127.0.0.1 and private-IP Host headers, which is all we serve.
        "--workers", "1",
    ]


def _start(settings: PlatformSettings, name: str) -> dict:
    if name == "ray":
        _ensure_token()
        temp_dir = _ray_temp_dir(settings)
        # No drain on SIGTERM: with a job running, the head would otherwise wait 30 s for the node
        # to go idle before stopping anything. `down` means stop now.
        env = {"RAY_AUTH_MODE": "token", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        cmd = _ray_command(settings, temp_dir)
    else:
        (settings.home / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        cmd, env = _mlflow_command(settings), {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if not Path(cmd[0]).exists():
        raise ServiceError(f"{cmd[0]} not found: install ringbit's dependencies into this environment.")
    entry = _launch(settings, name, cmd, env)
    entry["url"] = settings.dashboard_url if name == "ray" else settings.mlflow_url
    if name == "ray":
        entry.update(address=settings.ray_address, temp_dir=temp_dir)
    return entry


def _get(url: str, **kwargs: Any) -> requests.Response | None:
    try:
        return requests.get(url, timeout=HTTP_TIMEOUT_S, **kwargs)
    except requests.RequestException:
        return None


def _healthy(settings: PlatformSettings, name: str) -> bool:
    if name == "mlflow":
        resp = _get(f"{settings.mlflow_url}/health")
        return resp is not None and resp.status_code == 200
    resp = _get(f"{settings.dashboard_url}/api/version", headers=auth_headers())
    return resp is not None and resp.status_code == 200


def _ray_ready(settings: PlatformSettings) -> bool:
    # The dashboard answers a few seconds before the raylet has registered; wait for an ALIVE
    # node so that a job submitted right after `up` has somewhere to run.
    if not _healthy(settings, "ray"):
        return False
    resp = _get(f"{settings.dashboard_url}/api/v0/nodes", headers=auth_headers())
    try:
        nodes = resp.json()["data"]["result"]["result"]  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):  # no answer yet, or not JSON
        return False
    return any(node.get("state") == "ALIVE" for node in nodes)


def _ready(settings: PlatformSettings, name: str) -> bool:
    return _ray_ready(settings) if name == "ray" else _healthy(settings, name)


def _wait_ready(settings: PlatformSettings, state: dict, names: list[str], timeout: float) -> None:
    """Wait for all `names` together; a service that dies or times out is killed and reported."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            if _ready(settings, name):
                pending.remove(name)
            elif not _alive(state[name]):
                _fail(settings, state, name, "exited during startup", "Fix the cause shown above")
        if pending and time.monotonic() > deadline:
            _fail(
                settings, state, pending[0], f"did not become healthy within {timeout:.0f} s",
                "If the log shows no error the machine may just be slow (or busy)",
            )
        time.sleep(0.5)


def _fail(settings: PlatformSettings, state: dict, name: str, why: str, advice: str) -> None:
    """Kill the failed service, forget it, and raise; services that did come up are kept."""
    entry = state.pop(name)
    _stop(name, entry, timeout=5)
    _save_state(settings, state)
    raise ServiceError(
        f"{name} {why}. Last lines of {entry['log']}:\n{_log_tail(entry['log'])}\n"
        f"{advice}; then run `ringbit up` again."
    )


def up(settings: PlatformSettings, wait_timeout: float = 120) -> dict:
    """Start Ray and MLflow unless they already run; returns status(settings).

    Idempotent: services recorded in services.json whose process is alive are left alone. Raises
    ServiceError when a port is taken by someone else (before starting anything) or when a service
    dies or is not healthy within `wait_timeout` seconds (that one is killed; the other is kept).
    """
    with _locked(settings):
        state = _load_state(settings)
        for name in SERVICES:  # forget services whose process died, and reap what it left behind
            if name in state and not _alive(state[name]):
                _stop(name, state.pop(name), timeout=5)
                _save_state(settings, state)
        to_start = [name for name in SERVICES if name not in state]
        fields = {"ray": ["ray_port", "dashboard_port"], "mlflow": ["mlflow_port"]}
        for name in to_start:  # check every port before starting anything
            for field in fields[name]:
                _check_ports(settings, field)
        # Start both before waiting: Ray's head takes ~13 s and MLflow ~6 s on 2 cores.
        for name in to_start:
            state[name] = _start(settings, name)
            _save_state(settings, state)
        # Services that were already ours are waited for too (they may still be starting).
        _wait_ready(settings, state, list(SERVICES), wait_timeout)
    return status(settings)


def down(settings: PlatformSettings) -> dict:
    """Stop the services `up` recorded (and nothing else); returns {name: {pid, forced}} stopped."""
    with _locked(settings):
        state = _load_state(settings)
        # Also entries whose main process died: their children may still run. Ray first, then
        # MLflow: whatever Ray still runs may write to MLflow on its way out (Ray ~4 s, MLflow ~3 s).
        results = {name: _stop(name, state[name]) for name in SERVICES if name in state}
        _save_state(settings, {})
    return {name: result for name, result in results.items() if result}


def status(settings: PlatformSettings) -> dict:
    """For ray and mlflow: running, healthy, url, pid, started_by_ringbit; plus home.

    A service ringbit did not start but that answers on the configured port shows as running and
    healthy with started_by_ringbit False.
    """
    state = _load_state(settings)
    report: dict[str, Any] = {}
    for name in SERVICES:
        entry = state.get(name)
        ours = _alive(entry)
        healthy = _healthy(settings, name)
        report[name] = {
            "running": ours or healthy,
            "healthy": healthy,
            "url": settings.dashboard_url if name == "ray" else settings.mlflow_url,
            "pid": entry["pid"] if ours else None,
            "started_by_ringbit": ours,
        }
        if name == "ray":
            report[name]["address"] = settings.ray_address
    report["home"] = str(settings.home)
    return report
