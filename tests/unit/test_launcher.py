"""`make run` (python -m launcher): embedded defaults, supervision, clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.processes import Process, free_port


def launcher_env(tmp_path: Path, voice_dir: Path, port: int) -> dict[str, str]:
    """Nothing but the embedded defaults: filesystem broker, SQLite results, local files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOKSORI_")}
    env.update(
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        MOKSORI_VOICE_DIR=str(voice_dir),
        MOKSORI_PORT=str(port),
        MOKSORI_DEVICE="cpu",
        MOKSORI_BROKER_DIR=str(tmp_path / "broker"),
        MOKSORI_RESULT_BACKEND=f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        MOKSORI_STORAGE_URL=f"file://{tmp_path / 'media'}",
        MOKSORI_WORKER_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
    )
    return env


def pids(output: str, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", output)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_port_in_use_is_one_clear_line(tmp_path: Path, voice_dir: Path) -> None:
    """A taken port is explained in one line, without a traceback, before anything starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = Process(
            "launcher-busy",
            [sys.executable, "-m", "launcher"],
            launcher_env(tmp_path, voice_dir, port),
            tmp_path,
        )
        assert proc.proc.wait(timeout=60) == 1
        proc.stop()
    output = proc.output()
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "MOKSORI_PORT=" in output
    assert "Traceback" not in output


def test_runs_on_embedded_defaults_restarts_a_dead_worker_and_stops_cleanly(
    tmp_path: Path, voice_dir: Path
) -> None:
    """With no broker or cloud: it says "loading voices…" with each voice, and gives the URL
    only once the worker consumes, naming the voice that failed; a request then yields a WAV at
    once; a killed worker comes back (not ready meanwhile); SIGTERM stops every process it
    started."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = launcher_env(tmp_path, voice_dir, port)
    launcher = Process("launcher", [sys.executable, "-m", "launcher"], env, tmp_path)
    ready = f"launcher | ready: moksori on {base} (members 1, 2, 3 served)"
    try:
        launcher.wait_for(ready, timeout=240)
        output = launcher.output()
        for line in (
            "launcher | worker: loading voices… 0/4",
            "launcher | worker: loading voices… 3/4",
            "launcher | worker: loading voices… 4/4 (member 4 FAILED to load)",
            "launcher | member(s) 4 NOT served: the voice failed to load",
            f"launcher | try: curl -s -X POST '{base}/api/texts?wait=30'",
        ):
            assert line in output, line
        # The URL is given only after every voice loaded and the worker consumes.
        consuming = re.search(r"worker \| .*@\S+ ready\.", output)
        assert consuming is not None
        assert output.index("loading voices… 4/4") < consuming.start() < output.index(ready)
        assert base not in output[: output.index(ready)].replace(f"Listening at: {base}", "")
        started = time.monotonic()
        response = requests.post(
            f"{base}/api/texts?wait=30", json={"member_id": 2, "text": "바로 됩니다."}, timeout=40
        )
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 10  # served now, not after a voice loads

        def speak(text: str) -> None:
            response = requests.post(
                f"{base}/api/texts?wait=30", json={"member_id": 1, "text": text}, timeout=40
            )
            assert response.status_code == 200, response.text
            wav = requests.get(response.json()["url"], timeout=10)
            assert wav.content[:4] == b"RIFF"

        speak("안녕하세요!")
        # Each child has its own metrics directory under PROMETHEUS_MULTIPROC_DIR; the worker
        # serves its pool process's counts on its metrics port.
        assert sorted(p.name for p in (tmp_path / "prom").iterdir()) == ["api", "worker1"]
        worker_metrics = f"http://127.0.0.1:{env['MOKSORI_WORKER_METRICS_PORT']}/metrics"
        deadline = time.monotonic() + 30
        while 'moksori_worker_jobs_total{member="1",outcome="done"} 1.0' not in (
            requests.get(worker_metrics, timeout=10).text
        ):
            assert time.monotonic() < deadline, requests.get(worker_metrics, timeout=10).text
            time.sleep(0.2)
        (worker_pid,) = pids(launcher.output(), "worker")
        os.kill(worker_pid, signal.SIGKILL)
        launcher.wait_for("worker exited with code -9", timeout=10)
        deadline = time.monotonic() + 180
        while launcher.output().count("launcher | ready: ") < 2:
            assert time.monotonic() < deadline, launcher.output()[-3000:]
            time.sleep(0.5)
        output = launcher.output()
        assert len(pids(output, "worker")) == 2
        again = output.index("worker restarted: not ready until it has loaded its voices again")
        assert again < output.rindex("worker: loading voices… 4/4") < output.rindex(ready)
        speak("다시 왔어요.")
        started = pids(launcher.output(), "worker") + pids(launcher.output(), "api")
    finally:
        launcher.proc.send_signal(signal.SIGTERM)
        code = launcher.proc.wait(timeout=90)
        launcher.stop()
    assert code == 0
    assert "launcher | stopped" in launcher.output()
    assert not [pid for pid in started if alive(pid)]
    for pid in started:  # nothing left in their process groups either
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
