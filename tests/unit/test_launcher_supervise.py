"""The launcher restarts a process that dies, and gives up on one that keeps dying."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from credia import launcher
from credia.processes import ManagedProcess
from tests.waiting import wait_until


def process(tmp_path: Path, name: str, seconds: float) -> ManagedProcess:
    """A child that lives ``seconds`` and appends a line to its log at each start."""
    code = f"print('started', flush=True); import time; time.sleep({seconds})"
    return ManagedProcess(name, [sys.executable, "-c", code], "http://127.0.0.1:9/", log_path=tmp_path / f"{name}.log")


def test_a_process_that_dies_is_restarted_and_the_others_keep_running(tmp_path: Path, monkeypatch) -> None:
    steady, crashing = process(tmp_path, "steady", 60), process(tmp_path, "crashing", 0.2)
    processes = {"steady": steady, "crashing": crashing}
    for proc in processes.values():
        proc.start()
    steady_pid = steady.process.pid
    monkeypatch.setattr(launcher, "MAX_RESTARTS", 1000)
    supervisor = threading.Thread(target=launcher._supervise, args=(processes,), daemon=True)
    supervisor.start()
    try:
        wait_until(lambda: (tmp_path / "crashing.log").read_text().count("started") >= 3, timeout=20,
                   what="the crashing process was not restarted")
        assert steady.process.pid == steady_pid and steady.is_running()
    finally:
        monkeypatch.setattr(launcher, "MAX_RESTARTS", 0)  # lets the supervisor thread return
        wait_until(lambda: not supervisor.is_alive(), timeout=10, what="supervisor did not stop")
        for proc in processes.values():
            proc.stop()


def test_a_process_that_keeps_dying_stops_the_run(tmp_path: Path) -> None:
    crashing = process(tmp_path, "crashing", 0)
    crashing.start()
    try:
        assert launcher._supervise({"crashing": crashing}) == 1
        assert (tmp_path / "crashing.log").read_text().count("started") == launcher.MAX_RESTARTS + 1
    finally:
        crashing.stop()


def test_rasa_yields_the_cpu_to_the_processes_that_must_answer_at_once(tmp_path: Path) -> None:
    processes = launcher.build_processes(tmp_path / "model.tar.gz", tmp_path / "var", launcher.Ports())
    assert processes["rasa"].niceness == launcher.RASA_NICENESS > 0
    assert all(proc.niceness == 0 for name, proc in processes.items() if name != "rasa")

    child = ManagedProcess("nice", [sys.executable, "-c", "import os; print(os.nice(0), flush=True)"],
                           "http://127.0.0.1:9/", log_path=tmp_path / "nice.log", niceness=3)
    child.start()
    child.process.wait(timeout=10)
    child.stop()
    assert int((tmp_path / "nice.log").read_text()) == os.nice(0) + 3
