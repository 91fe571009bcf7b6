"""Prometheus metrics of one server, in a registry of its own (never the process-wide one).

    tokenloom_http_requests_total{endpoint, code}    requests answered, by status code
    tokenloom_prompt_tokens_total                    prompt tokens of admitted requests
    tokenloom_generation_tokens_total                tokens generated
    tokenloom_time_to_first_token_seconds            request arrival -> first token of a sequence
    tokenloom_inter_token_latency_seconds            one token of a sequence -> its next
    tokenloom_running_sequences, _waiting_sequences  read from the runtime at each scrape
    tokenloom_prefix_cache_hits_total, _misses_total, _cached_tokens_total
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_IDLE = {"running": 0, "waiting": 0, "prefix_hits": 0, "prefix_misses": 0, "prefix_cached_tokens": 0}


class RuntimeCollector(Collector):
    """The scheduler's own counts, read when Prometheus scrapes (zeros while the model loads)."""

    def __init__(self) -> None:
        self.scheduler = None

    def collect(self):
        stats = {**_IDLE, **(self.scheduler.stats() if self.scheduler is not None else {})}
        yield GaugeMetricFamily("tokenloom_running_sequences", "Sequences being decoded", value=stats["running"])
        yield GaugeMetricFamily("tokenloom_waiting_sequences", "Sequences waiting for a slot",
                                value=stats["waiting"])
        yield CounterMetricFamily("tokenloom_prefix_cache_hits", "Prompts that reused cached prefix blocks",
                                  value=stats["prefix_hits"])
        yield CounterMetricFamily("tokenloom_prefix_cache_misses", "Prompts that found no cached prefix",
                                  value=stats["prefix_misses"])
        yield CounterMetricFamily("tokenloom_prefix_cache_cached_tokens", "Prompt tokens served from the cache",
                                  value=stats["prefix_cached_tokens"])


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tokenloom_http_requests", "HTTP requests answered", ["endpoint", "code"],
                                registry=r)
        self.prompt_tokens = Counter("tokenloom_prompt_tokens", "Prompt tokens of admitted requests", registry=r)
        self.generation_tokens = Counter("tokenloom_generation_tokens", "Tokens generated", registry=r)
        self.time_to_first_token = Histogram(
            "tokenloom_time_to_first_token_seconds",
            "From a request's arrival to the first token of each sequence",
            buckets=TTFT_BUCKETS, registry=r)
        self.inter_token_latency = Histogram(
            "tokenloom_inter_token_latency_seconds", "Between consecutive tokens of one sequence",
            buckets=ITL_BUCKETS, registry=r)
        self.runtime = RuntimeCollector()
        r.register(self.runtime)

    def bind(self, scheduler) -> None:
        """Read running, waiting and prefix-cache counts from this scheduler from now on."""
        self.runtime.scheduler = scheduler

    def render(self) -> bytes:
        return generate_latest(self.registry)
