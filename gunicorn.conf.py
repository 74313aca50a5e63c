"""Gunicorn configuration for production serving (`scripts/serve.sh`, docs/deployment.md).

Worker model: pre-forked processes (``workers``), each running a few threads
(``gthread``). Processes give CPU parallelism past the GIL; the threads of one process
overlap database round trips and, unlike gunicorn's ``sync`` worker, keep HTTP
connections alive, so a proxy or load balancer reuses its connections instead of
paying a TCP handshake per request.

The processes share nothing in memory: tokens, used assertion ids (jti), idempotency
keys and bookings all live in the database, so any request may land on any worker, or
any machine behind a load balancer.

Every value can be overridden from the environment (names below), and gunicorn's own
``GUNICORN_CMD_ARGS`` still works on top of this file.
"""

from __future__ import annotations

import os
from typing import Any

from medikit.env import env_bool, env_int, env_str


def default_workers() -> int:
    """Gunicorn's rule of thumb, 2 x cores + 1: one process waits on I/O while another computes."""
    return 2 * (os.cpu_count() or 1) + 1


# --- Where to listen ---------------------------------------------------------------------
# BIND wins (e.g. "0.0.0.0:8000" or "unix:/run/medikit.sock"); else HOST and PORT.
# Loopback by default: the TLS-terminating proxy in front connects to it.
bind = [env_str("BIND") or f"{env_str('HOST', '127.0.0.1')}:{env_int('PORT', 8000)}"]

# --- Worker model -------------------------------------------------------------------------
workers = env_int("WEB_CONCURRENCY", default_workers())
worker_class = env_str("GUNICORN_WORKER_CLASS", "gthread")
# Two threads: with searches served from cache, requests are mostly CPU, and more threads
# per process only queue behind each other on the GIL. Measured on 2 cores (bench/load.py,
# docs/benchmarks.md): mixed-load p99/p50 6.0x with 2 threads, 14.4x with 4.
threads = env_int("GUNICORN_THREADS", 2)
# Seconds an idle keep-alive connection stays open. Behind a load balancer, set it above
# the balancer's idle timeout so the app never closes a connection the balancer reuses.
keepalive = env_int("GUNICORN_KEEPALIVE", 5)
# A request that runs longer than this is a bug (searches are bounded, see docs/api.md section 5):
# the worker is killed and replaced rather than left hanging.
timeout = env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)

# Recycle each worker after this many requests (jitter so they do not all restart at
# once) to bound memory if some library leaks; 0 turns recycling off (bench/load.py
# does, so a leak shows up in its memory samples instead of being hidden).
max_requests = env_int("GUNICORN_MAX_REQUESTS", 10_000)
max_requests_jitter = env_int("GUNICORN_MAX_REQUESTS_JITTER", 1_000)

# Load the application once in the master and fork it: workers share its memory pages
# and a broken configuration (e.g. no SECRET_KEY) fails once, at start, not per worker.
preload_app = env_bool("GUNICORN_PRELOAD", True)

# The heartbeat file goes to RAM where available: a slow disk must not get healthy
# workers killed for missing heartbeats.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# --- Logging ------------------------------------------------------------------------------
# Access logging costs a measurable share of a fast request; the proxy in front logs
# requests anyway. ACCESS_LOG=1 turns it on (to stdout).
accesslog = "-" if env_bool("ACCESS_LOG", False) else None
errorlog = "-"
loglevel = env_str("GUNICORN_LOG_LEVEL", "info")

# --- Proxy ---------------------------------------------------------------------------------
# Only the local proxy may set X-Forwarded-* (gunicorn also reads FORWARDED_ALLOW_IPS).
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def when_ready(server: Any) -> None:
    """Close any database connection the preloaded master opened, before it forks workers.

    A socket inherited by several processes would interleave their queries; each worker
    must open its own (and then keeps it, see CONN_MAX_AGE in medikit/settings.py).
    """
    from django.db import connections

    connections.close_all()


#: Collections of the youngest generation run after this many new container objects
#: (CPython's default is 700). 0 keeps Python's default.
_GC_THRESHOLD = env_int("GUNICORN_GC_THRESHOLD", 50_000)


def post_fork(server: Any, worker: Any) -> None:
    """Tune the garbage collector in each worker (Instagram's recipe for forked servers).

    ``gc.freeze()`` moves everything loaded before the fork (the whole application) out of
    the collector's reach: it is never garbage, and scanning it would also dirty the
    memory pages the workers share with the master. A higher first threshold collects less
    often: the search caches hold many thousands of objects, and each full collection
    paused every thread of a worker. Measured on 2 cores (bench/load.py, 150 s mix): mixed
    load p99 557 -> 315 ms and 333 -> 368 req/s (docs/benchmarks.md).
    """
    import gc

    gc.freeze()
    if _GC_THRESHOLD > 0:
        gc.set_threshold(_GC_THRESHOLD, 20, 100)
