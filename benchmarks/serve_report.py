"""The serving benchmark's results: one load level's statistics, the tables and the ratio lines.

`Level` holds every request of one level and derives the figures from them:
aggregate tokens/s = tokens of all requests that did not fail / wall time of the level;
TTFT and ITL percentiles over the same requests (ITL pooled over all gaps of all of them).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from sse_client import Result, percentile


def cpu_model() -> str:
    """'model name' from /proc/cpuinfo, else lscpu's 'Model name', else what platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    with contextlib.suppress(OSError):
        lines += subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def cpu_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"CPU: {cpu_model()}; torch capability {torch.backends.cpu.get_cpu_capability()}; "
            f"{os.cpu_count()} cores ({usable} usable); load average {os.getloadavg()}")


@dataclass
class Level:
    concurrency: int
    sent: int
    results: list[Result]
    wall: float
    cpu: float  # this process's CPU seconds during the level
    load: float = 0.0  # the 1-minute load average at its end: other work on the machine shows here

    def ok(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.error]

    def counted(self) -> list[Result]:
        return [r for r in self.results if not r.error]

    def tokens_per_s(self) -> float:
        return sum(r.tokens for r in self.counted()) / self.wall

    def ttft(self, q: float) -> float | None:
        return percentile([r.ttft for r in self.counted() if r.ttft is not None], q)

    def itl(self, q: float) -> float | None:
        return percentile([g for r in self.counted() for g in r.gaps], q)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f}"


HEADER = (f"{'server':17s} {'clients':>7s} {'sent':>5s} {'ok':>4s} {'failed':>6s} {'cut':>4s} {'tok/req':>7s} "
          f"{'wall s':>7s} {'tok/s':>7s} {'TTFT p50':>8s} {'p95 ms':>7s} {'ITL p50':>7s} {'p95 ms':>7s} {'client CPU':>10s} {'load':>5s}")


def print_level(name: str, level: Level) -> None:
    ok = level.ok()
    per_request = sum(r.tokens for r in ok) / len(ok) if ok else 0.0
    print(f"{name:17s} {level.concurrency:7d} {level.sent:5d} {len(ok):4d} {len(level.failed()):6d} "
          f"{sum(r.cut for r in level.results):4d} {per_request:7.1f} {level.wall:7.1f} {level.tokens_per_s():7.1f} "
          f"{ms(level.ttft(0.5)):>8s} {ms(level.ttft(0.95)):>7s} {ms(level.itl(0.5)):>7s} {ms(level.itl(0.95)):>7s} "
          f"{100 * level.cpu / level.wall:9.0f}% {level.load:5.1f}", flush=True)
    for r in level.failed()[:3]:
        print(f"    failed: {r.error}")
    if ok and all(r.usage_tokens is None for r in ok):
        print("    (no usage in the final chunk: tokens counted as text chunks)")


def print_prefix(name: str, rows: dict) -> None:
    for row, modes in rows.items():
        for mode, results in modes.items():
            good = [r for r in results if r.ok]
            ttfts = [r.ttft for r in good if r.ttft is not None]
            prompt = next((r.prompt_tokens for r in good if r.prompt_tokens), None)
            print(f"  {name:17s} {row:17s} {mode:12s} {len(good):3d}/{len(results):<3d} ok, "
                  f"prompt {prompt or '?'} tokens, TTFT p50 {ms(percentile(ttfts, 0.5))} ms, "
                  f"p95 {ms(percentile(ttfts, 0.95))} ms")
            for r in [r for r in results if r.error][:2]:
                print(f"    failed: {r.error}")


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def level_at(levels: list[Level], concurrency: int) -> Level | None:
    return next((lv for lv in levels if lv.concurrency == concurrency), None)


def print_ratios(measured: dict, prefix: dict, reference: int) -> None:
    print(f"\nratios at {reference} clients")
    if "ours" in measured:
        print_targets(measured["ours"], measured.get("llama-server", []), reference)
    else:
        print("  ours was not measured: no targets to check")
    for name, levels in measured.items():
        one_stream, many = level_at(levels, 1), level_at(levels, reference)
        if name != "ours" and one_stream and many:
            print(f"  {name}, {reference} clients vs 1: {many.tokens_per_s() / one_stream.tokens_per_s():.2f}x")
    for name, levels in measured.items():
        failed, sent = sum(len(lv.failed()) for lv in levels), sum(lv.sent for lv in levels)
        goal = f" (target 0): {verdict(failed == 0)}" if name == "ours" else ""
        print(f"  {name}: {failed} failed of {sent} requests{goal}")
    for name, rows in prefix.items():
        print_prefix_ratio(name, rows, target=name == "ours")


def print_targets(ours: list[Level], anchor: list[Level], reference: int) -> None:
    one_stream, many, theirs = level_at(ours, 1), level_at(ours, reference), level_at(anchor, reference)
    if one_stream and many:
        r = many.tokens_per_s() / one_stream.tokens_per_s()
        print(f"  ours, {reference} clients vs 1: {many.tokens_per_s():.1f} / {one_stream.tokens_per_s():.1f} "
              f"tok/s = {r:.2f}x (target >= 4x): {verdict(r >= 4)}")
    if many and theirs:
        r = many.tokens_per_s() / theirs.tokens_per_s()
        print(f"  ours vs llama-server: {many.tokens_per_s():.1f} / {theirs.tokens_per_s():.1f} tok/s = "
              f"{r:.2f}x (target >= 1.5x): {verdict(r >= 1.5)}")
        a, b = many.ttft(0.95), theirs.ttft(0.95)
        if a is not None and b is not None:
            print(f"  p95 TTFT: ours {ms(a)} ms vs llama-server {ms(b)} ms (target: below): {verdict(a < b)}")


def print_prefix_ratio(name: str, rows: dict, target: bool) -> None:
    off_row = "cache off" if "cache off" in rows else "distinct prompts"
    if "cache on" not in rows or off_row not in rows:
        return
    for mode in ("sequential", "all at once"):
        on = percentile([r.ttft for r in rows["cache on"][mode] if r.ok and r.ttft], 0.5)
        off = percentile([r.ttft for r in rows[off_row][mode] if r.ok and r.ttft], 0.5)
        if on and off:
            goal = f" (target >= 3x): {verdict(off / on >= 3)}" if target else ""
            print(f"  {name} prefix cache, {mode}: TTFT p50 {off_row} {ms(off)} ms / cache on {ms(on)} ms = "
                  f"{off / on:.2f}x{goal}")
