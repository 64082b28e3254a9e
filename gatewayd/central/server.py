"""Running central: one process, or ``--workers N`` processes sharing one port.

Each worker binds the same address with SO_REUSEPORT and the kernel spreads connections
over them. Workers share nothing but the database, which is why central can also grow to
several machines behind a load balancer, all using one PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import ssl
import tempfile
from types import FrameType

from aiohttp import web

from . import logs
from .app import build_app
from .config import CentralSettings
from .metrics import MULTIPROC_ENV

SHUTDOWN_SECONDS = 10.0


def ssl_context(settings: CentralSettings) -> ssl.SSLContext | None:
    """A server TLS context from ``--tls-cert``/``--tls-key``, or None for plain HTTP."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def serve_worker(settings: CentralSettings) -> None:
    """Serve in this process until SIGINT/SIGTERM (also the target of each worker process)."""
    logs.configure(settings.log_level)
    web.run_app(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=settings.workers > 1,
        ssl_context=ssl_context(settings),
        shutdown_timeout=SHUTDOWN_SECONDS,
        access_log=None,
        print=None,
    )


def serve(settings: CentralSettings) -> int:
    """Run ``settings.workers`` processes; return when they stop (exit code)."""
    if settings.workers == 1:
        serve_worker(settings)
        return 0
    # Each worker keeps its metrics in files here; /metrics in any worker sums them all.
    metrics_dir = tempfile.mkdtemp(prefix="gatewayd-central-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        return _supervise(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: CentralSettings) -> int:
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=serve_worker, args=(settings,), name=f"central-worker-{n}")
        for n in range(settings.workers)
    ]
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.is_alive():
                proc.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in workers:
            proc.start()
        # Any worker ending (crash or signal) ends the whole group; the supervisor
        # (systemd) restarts it, so no worker runs half-configured.
        multiprocessing.connection.wait([p.sentinel for p in workers])
        if not stopping:
            stop(signal.SIGTERM, None)
        for proc in workers:
            proc.join(SHUTDOWN_SECONDS)
            if proc.is_alive():
                proc.kill()
                proc.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [p.exitcode or 0 for p in workers]
    return 0 if stopping else max(1, *codes)
