"""Following a job through a dashboard connection that drops: a real local Ray cluster and its
real Jobs API, reached through a TCP relay that cuts every open connection once while the job's
log is streaming (what a loaded head node did to `ringbit submit`). The follower must reconnect,
see every log line exactly once, in order, and report the job's real final status."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from helpers import free_port


class DroppingRelay:
    """127.0.0.1:port -> target; drop_all() closes every connection open at that moment."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.port = target, free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_all(self) -> int:
        with self.lock:
            doomed, self.open = self.open, []
        for s in doomed:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        return len(doomed)


def submit_script(address: str, script) -> str:
    """Submit `python script`, retrying while a fresh head's job agent is not up yet ("No
    available agent to submit job")."""
    from ringbit.jobs import job_client

    client, deadline = job_client(address), time.monotonic() + 120
    while True:
        try:
            return client.submit_job(entrypoint=f"{sys.executable} {script}")
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def dashboard(platform, monkeypatch_module):
    """The Jobs API of a real `ringbit up` head on private ports (and its token)."""
    env, _, _ = platform
    for key, value in env.items():
        monkeypatch_module.setenv(key, value)
    return ("127.0.0.1", int(env["RINGBIT_DASHBOARD_PORT"]))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_follow_survives_a_dropped_dashboard_connection(dashboard, tmp_path, capsys):
    from ringbit.jobs import _tail

    relay = DroppingRelay(dashboard)
    address = f"http://127.0.0.1:{relay.port}"
    n = 40
    script = tmp_path / "lines.py"
    script.write_text(f"import time\nfor i in range({n}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.1)\n")
    job_id = submit_script(address, script)
    seen: list[str] = []
    dropped: list[int] = []

    def on_line(line: str) -> None:
        if line.startswith("line "):
            seen.append(line)
            if len(seen) == 10 and not dropped:  # mid-stream: cut the live log connection
                dropped.append(relay.drop_all())

    class NoDisplay:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    status = _tail(address, job_id, tmp_path / "job.log", on_line, NoDisplay(), retry_s=0.5,
                   give_up_after_s=60)
    assert dropped and dropped[0] > 0, "the relay never cut a connection: the test did not test anything"
    assert status == "SUCCEEDED"
    assert seen == [f"line {i}" for i in range(n)], seen
    assert "no answer from the Ray dashboard" in capsys.readouterr().err
    logged = [ln for ln in (tmp_path / "job.log").read_text().splitlines() if ln.startswith("line ")]
    assert logged == seen  # the saved log has no duplicated lines either


def test_follow_gives_up_with_a_message_when_the_dashboard_stays_away(tmp_path):
    from ringbit.jobs import _tail

    class NoDisplay:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    start = time.monotonic()
    with pytest.raises(SystemExit, match=r"lost the Ray dashboard .* ringbit logs raysubmit_x --follow"):
        _tail(f"http://127.0.0.1:{free_port()}", "raysubmit_x", tmp_path / "x.log", lambda line: None,
              NoDisplay(), retry_s=0.2, give_up_after_s=1.0)
    assert time.monotonic() - start < 30


def test_the_progress_bar_counts_what_the_job_counts(dashboard, tmp_path, capsys):
    """An evaluation's bar says `questions` and shows its running scores (it said `train`)."""
    from ringbit.jobs import follow

    address = f"http://{dashboard[0]}:{dashboard[1]}"
    script = tmp_path / "progress.py"
    script.write_text("for i in range(1, 6):\n"
                      "    print(f'[ringbit] step={i}/5 em={i / 10:.4g}', flush=True)\n")
    job_id = submit_script(address, script)
    assert follow(address, job_id, tmp_path / "job.log", unit="questions") == "SUCCEEDED"
    shown = capsys.readouterr().out
    assert "questions" in shown and "5/5" in shown and "em=0.5" in shown, shown
    assert "train" not in shown, shown
