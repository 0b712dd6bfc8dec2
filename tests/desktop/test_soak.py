"""Soak: many runs started and stopped in the app, and sessions saved and reopened, without growth or leftovers."""

import multiprocessing
import os
import threading
from pathlib import Path

from conftest import TIMEOUT, finished_run
from gse_desktop.state import MAX_KEPT_RUNS

RUN_CYCLES, SESSION_CYCLES, WARM_UP = 50, 20, 5


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_start_stop_cycles_and_session_cycles_keep_memory_threads_and_processes(qtbot, window, tmp_path):
    window.controls.spins["iters"].setValue(5000)  # long runs: every one is stopped
    engine_pid = window.engine.info["pid"]
    threads = threading.active_count()

    def cycle():
        window.controls.run_button.click()
        qtbot.waitUntil(lambda: len(window.state.history) >= 2, timeout=TIMEOUT)
        window.controls.stop_button.click()
        qtbot.waitUntil(lambda: window.engine.busy_run is None, timeout=TIMEOUT)

    for _ in range(WARM_UP):
        cycle()
    gui, engine = rss_kb(os.getpid()), rss_kb(engine_pid)
    for _ in range(RUN_CYCLES):
        cycle()
    assert rss_kb(os.getpid()) <= 1.10 * gui and rss_kb(engine_pid) <= 1.10 * engine
    assert window.engine.info["pid"] == engine_pid and len(window.state.runs) == MAX_KEPT_RUNS

    window.controls.spins["iters"].setValue(20)
    finished_run(qtbot, window)
    path = tmp_path / "soak.gses"
    for cycle_number in range(SESSION_CYCLES + WARM_UP):
        if cycle_number == WARM_UP:
            gui = rss_kb(os.getpid())
        assert window.files.save_session(path) and window.files.open_session(path), window.messages
    assert rss_kb(os.getpid()) <= 1.10 * gui and window.messages == []
    assert threading.active_count() <= threads
    children = [p for p in multiprocessing.active_children() if p.name == "gse-engine"]
    assert [p.pid for p in children] == [engine_pid]  # one engine process, the same one, all along
