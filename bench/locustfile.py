"""Load for the overhead benchmark (bench/overhead.ts), run by real Locust (Debian's /usr/bin/locust).

Constant rate like the paper's experiment: N users, each doing one request per second
(`constant_throughput(1)`), so `-u 100 -r 100` is 100 requests/s and `-u 500 -r 500` is 500 requests/s,
with the users' phases spread evenly over each second (see on_start).
The mix hits every service of the app: the top page and search (gateway → api → search → db-access)
and uploads (gateway → api → upload → db-access).

Locust's CSV files are rewritten every second and are not finalised at exit, its percentiles are rounded
to whole milliseconds, and FastHttpUser even truncates each response time to an integer millisecond. So
every task times its own request with perf_counter (a float append per request), and an
`events.quitting` listener writes exact totals and percentiles as JSON to $IKON_BENCH_EXACT.
"""

import json
import os
import random
import time

import gevent
from gevent import GreenletExit
from locust import FastHttpUser, constant_throughput, events, task

WORDS = ["container", "log", "tracing", "kubernetes", "mesh", "latency", "network", "search", "sidecar"]

_samples = []  # (name, response_time_ms, failed, start in seconds since the first request started)
_first = None
_last = None


def _timed(name, send):
    """Sends one request and records its exact response time (ms, float).

    A request cut off because the test time is over (Locust kills the user's greenlet) is not recorded:
    it neither failed nor finished.
    """
    global _first, _last
    started = time.perf_counter()
    if _first is None:
        _first = started
    try:
        r = send()
        failed = r.status_code == 0 or r.status_code >= 400
    except GreenletExit:
        raise
    except Exception:
        failed = True
    now = time.perf_counter()
    _last = now
    _samples.append((name, (now - started) * 1000.0, failed, started - _first))


def _percentile(sorted_values, q):
    """Nearest-rank percentile (the same definition bench/loadgen.ts uses)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[k]


def _per_second():
    buckets = {}
    for _name, rt, _failed, at in _samples:
        buckets.setdefault(int(at), []).append(rt)
    out = []
    for sec in sorted(buckets):
        v = sorted(buckets[sec])
        out.append({"second": sec, "count": len(v), "p50": _percentile(v, 0.5), "p99": _percentile(v, 0.99)})
    return out


@events.quitting.add_listener
def _on_quitting(environment, **_kw):
    path = os.environ.get("IKON_BENCH_EXACT")
    if not path:
        return
    total = environment.stats.total
    # Requests that started during the warm-up (users spawning, JIT) are counted but not in the percentiles.
    warmup = float(os.environ.get("IKON_BENCH_WARMUP_S", "0"))
    steady = [s for s in _samples if s[3] >= warmup]
    times = sorted(s[1] for s in steady)
    by_name = {}
    for name, _rt, failed, _at in _samples:
        e = by_name.setdefault(name, {"count": 0, "failures": 0})
        e["count"] += 1
        e["failures"] += 1 if failed else 0
    elapsed = (_last - _first) if _first is not None and _last is not None else 0.0
    # Rate over the steady window: requests started after the warm-up, over the run time (-t, passed as
    # $IKON_BENCH_DURATION_S) after the warm-up. Locust spawns its users in a burst, so each user's one
    # request per second lands at nearly the same moment: first-to-last-request time would overstate the rate.
    duration = float(os.environ.get("IKON_BENCH_DURATION_S", "0")) or elapsed
    steady_elapsed = max(0.0, duration - warmup)
    out = {
        "tool": "locust",
        "count": len(_samples),
        "failures": sum(1 for s in _samples if s[2]),
        "elapsedSeconds": elapsed,
        "warmupSeconds": warmup,
        "steadyCount": len(steady),
        "steadyFailures": sum(1 for s in steady if s[2]),
        "rps": len(steady) / steady_elapsed if steady_elapsed > 0 else 0.0,
        "p50": _percentile(times, 0.50),
        "p95": _percentile(times, 0.95),
        "p99": _percentile(times, 0.99),
        "max": times[-1] if times else None,
        "mean": sum(times) / len(times) if times else None,
        "byName": by_name,
        # Per-second medians and p99s, to see warm-up and noise over the run.
        "perSecond": _per_second(),
        # Locust's own (rounded) totals, for cross-checking with its CSV.
        "locust": {
            "count": total.num_requests,
            "failures": total.num_failures,
            "median": total.median_response_time,
            "p95": total.get_response_time_percentile(0.95),
            "p99": total.get_response_time_percentile(0.99),
            "rps": total.total_rps,
        },
    }
    with open(path, "w") as f:
        json.dump(out, f)


_spawned = 0


class PaperSearchUser(FastHttpUser):
    wait_time = constant_throughput(1)

    def on_start(self):
        # Locust starts `-r` users per second in one burst, and constant_throughput(1) then keeps every user
        # on the same phase: all requests of a second would arrive at once. Spreading the users' phases evenly
        # over the second makes the load a constant rate (the same arrival process as bench/loadgen.ts).
        global _spawned
        users = max(1, self.environment.parsed_options.num_users or 1)
        gevent.sleep((_spawned % users) / users)
        _spawned += 1

    @task(6)
    def top_page(self):
        _timed("/", lambda: self.client.get("/", name="/"))

    @task(3)
    def search(self):
        _timed("/search", lambda: self.client.get(f"/search?q={random.choice(WORDS)}", name="/search"))

    @task(1)
    def upload(self):
        title = f"{random.choice(WORDS)} {random.choice(WORDS)} study {random.randint(1, 10**6)}"
        body = {"title": title, "authors": ["Bench"], "pdfBytes": 123456}
        _timed("/upload", lambda: self.client.post("/upload", json=body, name="/upload"))
