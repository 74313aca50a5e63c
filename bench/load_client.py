"""The load driver of bench/load.py: a separate process, asyncio + aiohttp, keep-alive.

    python bench/load_client.py PLAN.json PHASE --duration 30 --concurrency 32

PLAN.json holds the base URL, the bearer token and the data to draw requests from
(see bench/load.py). Prints one JSON object: per request kind, the count, statuses and
latency percentiles. Runs ``--warmup`` seconds unmeasured first, then measures until
``--duration`` seconds or ``--max-requests`` requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import aiohttp

#: Share of each request kind in the mixed phase.
MIX = (("slot", 40), ("schedule", 20), ("appointment", 30), ("book", 10))
#: The reads-by-id phases (and ``metadata``): one kind each (bench/load.py).
READ_KINDS = ("read-slot", "read-schedule", "read-appointment", "metadata")


def api_headers(token: str) -> dict[str, str]:
    """Headers of every FHIR request the load clients send."""
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/fhir+json",
        "Content-Type": "application/fhir+json",
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


class Requests:
    """Draws requests of each kind from the plan; every call is a fresh random one."""

    def __init__(self, plan: dict[str, Any], rng: random.Random) -> None:
        self.base = plan["base_url"].rstrip("/")
        self.fhir = f"{self.base}/v2/{plan['organization']}/fhir/R4"
        self.patients: list[str] = plan["patients"]
        self.candidates: list[list[str]] = plan["booking_candidates"]
        self.today = date.fromisoformat(plan["today"])
        self.schedules: list[str] = plan.get("schedules", [])
        self.rng = rng
        #: Ids for the reads-by-id phases (bench/load_data.read_targets).
        self.reads: dict[str, list[Any]] = plan.get("reads", {})

    def day(self, low: int, high: int) -> str:
        return (self.today + timedelta(days=self.rng.randint(low, high))).isoformat()

    def make(self, kind: str) -> tuple[str, str, bytes | None]:
        if kind == "healthz":
            return "GET", f"{self.base}/healthz", None
        if kind == "slot":
            first = self.today + timedelta(days=self.rng.randint(0, 13))
            last = first + timedelta(days=7)
            return (
                "GET",
                f"{self.fhir}/Slot?status=free&start=ge{first}&start=lt{last}&_count=20",
                None,
            )
        if kind == "stored-week":
            # The stored-slot clinic (issue 19): a week of free stored slots, first page,
            # from a day of the coming week. Seven windows of ~9,000 stored slots fit the
            # default search cache (SEARCH_CACHE_ROWS); fourteen would measure its bound.
            first = self.today + timedelta(days=self.rng.randint(0, 6))
            last = first + timedelta(days=7)
            return (
                "GET",
                f"{self.fhir}/Slot?status=free&start=ge{first}&start=lt{last}&_count=20",
                None,
            )
        if kind == "stored-day":
            # One schedule's day of stored slots, every status (36 of them on a weekday):
            # any of the 50 schedules, one of the next five days (250 searches to cache).
            schedule = self.rng.choice(self.schedules)
            first = self.today + timedelta(days=self.rng.randint(0, 4))
            return (
                "GET",
                f"{self.fhir}/Slot?schedule={schedule}&start=ge{first}"
                f"&start=lt{first + timedelta(days=1)}&_count=50",
                None,
            )
        if kind == "schedule":
            return "GET", f"{self.fhir}/Schedule?date=ge{self.day(0, 13)}&_count=20", None
        if kind == "appointment":
            patient = self.rng.choice(self.patients)
            return (
                "GET",
                f"{self.fhir}/Patient/{patient}/Appointment"
                f"?date=ge{self.day(-90, -60)}&date=le{self.day(0, 7)}&_count=20",
                None,
            )
        if kind == "book":
            patient = self.rng.choice(self.patients)
            schedule, role, start = self.rng.choice(self.candidates)
            body = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "start", "valueDateTime": start},
                    {"name": "schedule", "valueString": schedule},
                    {"name": "practitionerRole", "valueString": role},
                    {"name": "status", "valueString": "booked"},
                ],
            }
            return (
                "POST",
                f"{self.fhir}/Patient/{patient}/Appointment/$book-slot",
                json.dumps(body).encode(),
            )
        read = self.make_read(kind)
        if read is not None:
            return read
        raise ValueError(f"unknown request kind {kind!r}")

    def make_read(self, kind: str) -> tuple[str, str, bytes | None] | None:
        """A read by id of a random stored row, or ``metadata``; None for other kinds."""
        if kind == "metadata":
            return "GET", f"{self.fhir}/metadata", None
        if kind == "read-slot":
            return "GET", f"{self.fhir}/Slot/{self.rng.choice(self.reads['slot'])}", None
        if kind == "read-schedule":
            return "GET", f"{self.fhir}/Schedule/{self.rng.choice(self.reads['schedule'])}", None
        if kind == "read-appointment":
            patient, appointment = self.rng.choice(self.reads["appointment"])
            return "GET", f"{self.fhir}/Patient/{patient}/Appointment/{appointment}", None
        return None


def kinds_for(phase: str) -> tuple[list[str], list[int]]:
    if phase == "mix":
        return [k for k, _ in MIX], [w for _, w in MIX]
    return [phase], [1]


async def run(
    plan: dict[str, Any],
    phase: str,
    *,
    duration: float,
    warmup: float,
    concurrency: int,
    max_requests: int,
    seed: int,
) -> dict[str, Any]:
    kinds, weights = kinds_for(phase)
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    transport_errors: Counter[str] = Counter()
    headers = api_headers(plan["token"])
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    measured = 0
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + duration

    async def worker(index: int) -> None:
        nonlocal measured
        rng = random.Random(seed * 1_000 + index)
        requests = Requests(plan, rng)
        while True:
            now = time.perf_counter()
            if now >= stop_at or measured >= max_requests:
                return
            kind = rng.choices(kinds, weights)[0]
            method, url, body = requests.make(kind)
            t0 = time.perf_counter()
            try:
                async with session.request(method, url, data=body) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = 0
                transport_errors[type(exc).__name__] += 1
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                measured += 1
                latencies[kind].append(t1 - t0)
                statuses[kind][status] += 1

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = min(time.perf_counter(), stop_at) - measure_from

    def summary(values: list[float], status_counts: Counter[int]) -> dict[str, Any]:
        values.sort()
        return {
            "count": len(values),
            "rps": len(values) / elapsed if elapsed > 0 else 0.0,
            "statuses": {str(k): v for k, v in sorted(status_counts.items())},
            "p50_ms": percentile(values, 50) * 1000,
            "p95_ms": percentile(values, 95) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "max_ms": (values[-1] * 1000) if values else 0.0,
        }

    every: list[float] = [v for values in latencies.values() for v in values]
    total_statuses: Counter[int] = Counter()
    for counts in statuses.values():
        total_statuses.update(counts)
    return {
        "phase": phase,
        "seconds": elapsed,
        "concurrency": concurrency,
        "all": summary(every, total_statuses),
        "kinds": {kind: summary(latencies[kind], statuses[kind]) for kind in sorted(latencies)},
        "transport_errors": dict(transport_errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument(
        "phase",
        choices=[
            "healthz",
            "slot",
            "schedule",
            "appointment",
            "book",
            "mix",
            "stored-week",
            "stored-day",
            *READ_KINDS,
        ],
    )
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    with open(args.plan, encoding="utf-8") as handle:
        plan = json.load(handle)
    result = asyncio.run(
        run(
            plan,
            args.phase,
            duration=args.duration,
            warmup=args.warmup,
            concurrency=args.concurrency,
            max_requests=args.max_requests,
            seed=args.seed,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
