"""Helpers for test_23_*.py (the Python backend helper, clients/python):
backend processes built on rainbow_backend, and waiting on files they
write. Not a test module."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import rainbow as rb

REPO = Path(__file__).resolve().parents[2]
CLIENTS_PY = REPO / "clients" / "python"
HELPER_BACKEND = REPO / "tests" / "fixtures" / "py_helper_backend.py"
EXAMPLE = CLIENTS_PY / "example_backend.py"

if str(CLIENTS_PY) not in sys.path:
    sys.path.insert(0, str(CLIENTS_PY))


def env_with_clients():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CLIENTS_PY), env.get("PYTHONPATH"))
                                        if p)
    return env


class Proc:
    """A backend process; its output goes to <dir>/<name>.log."""

    def __init__(self, name, argv, dir, port=None, port_on_stdout=False, env=None):
        self.name, self.argv, self.dir = name, list(argv), Path(dir)
        self.port = port
        self.port_on_stdout = port_on_stdout
        self.env = env
        self.proc = None
        self.log_path = self.dir / ("%s.log" % name)

    def start(self, timeout=30):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE if self.port_on_stdout else log,
            stderr=log, stdin=subprocess.DEVNULL, env=self.env or env_with_clients(),
            preexec_fn=rb._die_with_parent)
        log.close()
        if self.port_on_stdout:
            line = self.proc.stdout.readline()
            if not line.strip().isdigit():
                self.kill()
                raise AssertionError("%s did not start: %r\n%s" % (self.name, line, self.log()))
            self.port = int(line)
        rb.wait_until(self._listening, timeout, what="%s listening on %s" % (self.name, self.port))
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                            self.log()))
        import socket
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def stop(self):
        self.kill(signal.SIGTERM)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def helper_backend(dir, store="memory", db=None, token=rb.TOKEN, port=0):
    """tests/fixtures/py_helper_backend.py, started."""
    argv = [rb.PY, str(HELPER_BACKEND), "--dir", str(dir), "--port", str(port), "--token", token,
            "--store", store]
    if store == "sqlite":
        argv += ["--db", str(db)]
    return Proc("helper-backend", argv, dir, port_on_stdout=True).start()


def helper_urls(be):
    return {"connect_url": be.url("/rainbow/connect"), "forward_url": be.url("/rainbow/msg/"),
            "close_url": be.url("/rainbow/close")}


def lines(path):
    try:
        return [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def json_lines(path):
    return [json.loads(ln) for ln in lines(path)]
