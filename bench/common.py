"""Shared helpers for Pave's benchmarks: build, start `pave up`, wait for readiness."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAVE = os.path.join(ROOT, "target", "release", "pave")


def build():
    """Builds the release binary (once; cargo makes it a no-op when fresh)."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pave-cli"], cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port, path="/readyz"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            data = s.recv(64)
            return int(data.split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Server:
    """A `pave up` child process in its own directory."""

    def __init__(self, database=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="pave-bench-")
        self.port = free_port()
        self.database = database
        self.proc = None
        self.start_args = []

    def start(self):
        """Starts the server; returns milliseconds until /readyz answered 200."""
        args = [PAVE, "up", "--listen", f"127.0.0.1:{self.port}", "--edge-listen", "127.0.0.1:0"]
        if self.database:
            args += ["--database", self.database]
        args += self.start_args
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAVE_")}
        env["PAVE_CONFIG_DIR"] = os.path.join(self.dir, "config")
        started = time.perf_counter()
        self.proc = subprocess.Popen(args, cwd=self.dir, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while http_status(self.port) != 200:
            if self.proc.poll() is not None:
                raise RuntimeError("pave up exited early")
            if time.perf_counter() - started > 30:
                raise RuntimeError("pave up not ready after 30 s")
            time.sleep(0.001)
        return (time.perf_counter() - started) * 1000

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self):
        with open(os.path.join(self.dir, ".pave", "admin-token")) as f:
            return f.read().strip()

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cli(self, *args, check=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAVE_")}
        env["PAVE_CONFIG_DIR"] = os.path.join(self.dir, "config")
        return subprocess.run([PAVE, *args], cwd=self.dir, env=env, check=check,
                              capture_output=True, text=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_database(name):
    """Creates a fresh PostgreSQL database; returns its URL or None when no server answers."""
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"],
                       check=True, capture_output=True)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
