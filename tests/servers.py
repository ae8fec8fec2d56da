"""Throwaway servers for integration tests: a private PostgreSQL cluster and an `mlflow server` in front of it.

Both are context managers that clean up on exit, also when the body (or their own start-up) fails:

    with postgres(tmp) as dsn, mlflow_server(dsn, tmp / "artifacts") as url:
        ...  # url == "http://127.0.0.1:PORT"

`postgres` raises `ServerUnavailable` when no PostgreSQL binaries exist (the caller turns that into a skip);
every other problem is an error that shows the server's log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql"


class ServerUnavailable(RuntimeError):
    """The software a server needs is not installed here (a reason to skip, not to fail)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path | None:
    """Directory holding `initdb`/`pg_ctl`: the newest /usr/lib/postgresql/*/bin (Debian), else the PATH."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin/", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.realpath(on_path))
    for initdb in candidates:
        bindir = Path(initdb).parent
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _run_as() -> tuple[list[str], str | None]:
    """Command prefix that drops root (PostgreSQL refuses to run as root) and the user it switches to."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", user, "--"], user
        if shutil.which("setpriv"):
            entry = pwd.getpwnam(user)
            return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"], user
    raise ServerUnavailable("running as root, but there is no 'postgres' user and no runuser/setpriv to switch to")


@contextlib.contextmanager
def postgres(tmp_dir: str | os.PathLike | None = None, *, start_timeout: int = 60) -> Iterator[str]:
    """Start a private PostgreSQL cluster on 127.0.0.1 and a free port; yield the DSN of its database `mlflow`.

    Trust authentication, superuser `mlflow`, fsync off (a test database). When running as root the cluster is
    owned by and run as the `postgres` user, in a fresh directory under the system temp dir (pytest's tmp_path
    is private to root, so that user could not enter it); otherwise it lives under `tmp_dir`.
    Stopped (`pg_ctl stop -m immediate`, then SIGKILL if needed) and deleted on exit.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise ServerUnavailable(INSTALL_HINT)
    prefix, user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="leadscore-pg-", dir=None if user else tmp_dir))
    data, sockdir, logfile = base / "data", base / "sock", base / "postgres.log"
    sockdir.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for path in (base, sockdir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE", "PGDATA"):
        env.pop(var, None)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*prefix, *args], cwd=base, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                               f"--- {logfile}\n{_tail(logfile)}")
        return proc

    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "mlflow", "-E", "UTF8", "--no-locale",
            "--no-sync")
        for attempt in range(3):  # another process may grab the free port between probe and bind
            port = free_port()
            opts = (f"-p {port} -k {sockdir} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off "
                    "-c full_page_writes=off")
            try:
                run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", opts, "-t",
                    str(start_timeout), "-w", "start", timeout=start_timeout + 30)
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        createdb = bindir / "createdb"
        run(str(createdb), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if started or (data / "postmaster.pid").exists():
            stop = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                   "-t", "30", "stop"], cwd=base, env=env, capture_output=True, timeout=60)
            if stop.returncode != 0:
                _kill_postmaster(data)
        shutil.rmtree(base, ignore_errors=True)


def _kill_postmaster(data: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)


def psql(dsn: str, sql: str) -> str:
    """Run one SQL statement with the cluster's own `psql`; return its unaligned, tuples-only output."""
    bindir = postgres_bindir()
    exe = str(bindir / "psql") if bindir and (bindir / "psql").exists() else "psql"
    proc = subprocess.run([exe, dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed: {proc.stderr}")
    return proc.stdout.strip()


# ---------------------------------------------------------------- MLflow tracking server


def sqlalchemy_uri(dsn: str) -> str:
    """The libpq DSN with SQLAlchemy's psycopg2 driver named explicitly.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3 (`import psycopg`), 2.0 to psycopg2; naming the
    driver makes the server work with psycopg2-binary under either.
    """
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", dsn)


def _mlflow_command() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]


def _get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifact_dir: str | os.PathLike, *, timeout: float = 90,
                  log_path: str | os.PathLike | None = None) -> Iterator[str]:
    """Run `mlflow server` (one worker, proxied artifacts in `artifact_dir`); yield its `http://127.0.0.1:PORT`.

    Ready once `/health` answers and a REST call is accepted (host validation exempts `/health`, so the second
    check proves that requests to 127.0.0.1 get past MLflow's security middleware). The process group is
    terminated on exit (SIGTERM, then SIGKILL after 15 s). Job execution is switched off (see below).
    """
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else artifact_dir.parent / "mlflow-server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*_mlflow_command(), "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(artifact_dir.resolve()), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--allowed-hosts", f"127.0.0.1:{port},127.0.0.1,localhost:{port},localhost"]
    # Job execution (on by default since MLflow 3.x with a database backend) forks a job runner and ~7 huey
    # consumer processes, each importing mlflow: seconds of CPU the tests need, for GenAI jobs they never run.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=artifact_dir.parent, start_new_session=True)
    try:
        _wait_ready(proc, url, timeout, log_path)
        yield url
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    probe = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            if _get(f"{url}/health") == 200:
                status = _get(probe)
                if status == 200:
                    return
                last = f"/health is up but {probe} answered {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} not ready after {timeout:.0f} s ({last}):\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group: mlflow + its uvicorn worker
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ---------------------------------------------------------------- leadscore serve


@contextlib.contextmanager
def leadscore_server(model: str, *args: str, env: dict | None = None, timeout: float = 90,
                     log_path: str | os.PathLike | None = None) -> Iterator[str]:
    """Run `leadscore serve --model MODEL ARGS` on a free port of 127.0.0.1; yield its base URL once /health is 200."""
    import sys

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"leadscore-serve-{port}.log")
    cmd = [sys.executable, "-m", "leadscore", "serve", "--model", model, "--port", str(port), *args]
    full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"leadscore serve exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if _get(f"{url}/health", timeout=2) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"leadscore serve at {url} not ready after {timeout:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
