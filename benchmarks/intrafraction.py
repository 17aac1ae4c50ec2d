"""Intrafraction alert latency in both directions, offsets present at the start, breath holds.

Run ``.venv/bin/python benchmarks/intrafraction.py [--quick]`` from the project root. It prints
one table per scenario and ends with one JSON line.

What is compared
----------------
- **new**: :class:`igrt.intrafraction.IntrafractionMonitor` with the default protocol (KIM:
  > 3 mm for > 5 s; the end-exhale level of the latest pause; a plan reference; breath-hold mode
  with the ±3 mm gating window where the scenario is a breath-hold treatment).
- **former**: the rule of ``api/streaming.py`` before issue 13.6, reproduced here: the reference
  is the 90th percentile of the first 10 s of the stream, the level the 90th percentile of the
  trailing 8 s, the same KIM rule (:class:`igrt.intrafraction.ActionRule`).

Traces (positions as the tracker would report them, superior positive, 4 frames per second,
white tracking noise of 0.4 mm SD): regular Lujan breathing (``n = 3``, a rest at exhale, and
``n = 1``, a sinusoid) of 12 mm every 4 s, and the 15 real ExtMarker traces of
``../shared/data/breathing`` (external markers of volunteers scaled to a 12 mm median liver
amplitude; CC BY 4.0, Krilavicius et al.) when they are present.

Scenarios
---------
1. **Latency**: a ±4 mm step of the baseline at 16 phases of the breath (Lujan) or at 16 times
   (real traces), after 20 s; latency = alert time - step time. Misses: no alert within 40 s.
2. **Offset at start**: the dome rests 4 mm inferior (and superior) to the plan from the first
   frame; detected or not within the 60 s stream.
3. **Steady breathing**: 60 s at the planned level; false alerts per stream.
4. **Breath-hold treatment**: three 25 s holds at the planned hold level (and 5 mm away) with
   free breathing between them; alerts per stream.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import breathing
from igrt.intrafraction import (
    ActionRule,
    IntrafractionMonitor,
    IntrafractionRule,
    MonitorModeValues,
    MonitorReference,
    ReferenceSourceValues,
)
from igrt.protocol import DEFAULT_PROTOCOL

FPS = 4.0
NOISE_SD_MM = 0.4
AMPLITUDE_MM = 12.0
PERIOD_S = 4.0
SHIFT_MM = 4.0
SHIFT_AFTER_S = 20.0
DURATION_S = 60.0
RULE = IntrafractionRule.from_protocol(DEFAULT_PROTOCOL)

Trace = npt.NDArray[np.float64]
Runner = Callable[[Trace], list[float]]


def _times(n: int) -> Trace:
    return np.arange(n, dtype=np.float64) / FPS


def run_new(
    si_mm: Trace,
    reference_mm: float = 0.0,
    mode: MonitorModeValues = MonitorModeValues.FREE_BREATHING,
) -> list[float]:
    """Alert times of the new rule against a plan reference."""
    reference = MonitorReference.given(reference_mm, ReferenceSourceValues.PLAN, "benchmark")
    monitor = IntrafractionMonitor(RULE, reference, window_s=8.0, mode=mode)
    raised = []
    for t, si in zip(_times(si_mm.size), si_mm, strict=True):
        event = monitor.update(float(t), float(si)).event
        if event is not None and event.kind == "raised":
            raised.append(float(t))
    return raised


def run_former(si_mm: Trace) -> list[float]:
    """Alert times of the rule before issue 13.6 (90th percentiles, stream-start reference)."""
    rule = ActionRule(threshold_mm=RULE.threshold_mm, persistence_s=RULE.persistence_s)
    times = _times(si_mm.size)
    reference = float(np.percentile(si_mm[times <= 10.0], 90.0))
    raised = []
    for i, t in enumerate(times):
        if t <= 10.0:
            continue
        window = si_mm[(times > t - 8.0) & (times <= t)]
        event = rule.update(float(t), float(np.percentile(window, 90.0)) - reference, i)
        if event is not None and event.kind == "raised":
            raised.append(float(t))
    return raised


def _noisy(signal: Trace, seed: int) -> Trace:
    return signal + np.random.default_rng(seed).normal(0.0, NOISE_SD_MM, signal.size)


def _lujan(n: int, seed: int, duration_s: float = DURATION_S, phase: float = 0.0) -> Trace:
    base = breathing.regular(
        AMPLITUDE_MM, PERIOD_S, duration_s, FPS, n=n, phase_fraction=phase, seed=seed
    )
    return np.asarray(base.sample(_times(int(duration_s * FPS))))


def _real(path: Path, start_s: float) -> Trace | None:
    try:
        base = breathing.replay_real_trace(path, AMPLITUDE_MM, FPS, start_s=start_s)
    except Exception:  # a trace too short for this start, or refused: skipped, and counted
        return None
    samples = _times(int(DURATION_S * FPS))
    if base.times_s[-1] < samples[-1]:
        return None
    si = np.asarray(base.sample(samples))
    # The plan's 0 mm: the exhale level (90th percentile) of the stretch before any step.
    return si - float(np.percentile(si[samples < SHIFT_AFTER_S], 90.0))


def _bases(quick: bool) -> dict[str, list[Trace]]:
    phases = np.arange(0.0, 1.0, 1.0 / (4 if quick else 16))
    bases = {
        "lujan n=3": [_lujan(3, i, phase=float(p)) for i, p in enumerate(phases)],
        "lujan n=1": [_lujan(1, i, phase=float(p)) for i, p in enumerate(phases)],
    }
    try:
        paths = breathing.list_real_traces()
    except Exception:
        paths = []
    real = [t for p in paths[: 5 if quick else None] if (t := _real(p, 30.0)) is not None]
    if real:
        bases["real (ExtMarker)"] = real
    return bases


def _latencies(runner: Runner, bases: list[Trace], shift_mm: float) -> dict[str, float]:
    lat, misses, early = [], 0, 0
    for k, base in enumerate(bases):
        si = _noisy(base, 1000 + k)
        times = _times(si.size)
        at_s = SHIFT_AFTER_S + (k % 16) * PERIOD_S / 16.0
        si = si + np.where(times >= at_s, shift_mm, 0.0)
        raised = runner(si)
        if any(t < at_s for t in raised):  # the trace itself drifted: no latency to measure
            early += 1
            continue
        after = [t - at_s for t in raised]
        if after and after[0] <= 40.0:
            lat.append(after[0])
        else:
            misses += 1
    values = np.asarray(lat)
    return {
        "mean_s": float(values.mean()) if values.size else float("nan"),
        "median_s": float(np.median(values)) if values.size else float("nan"),
        "max_s": float(values.max()) if values.size else float("nan"),
        "misses": misses,
        "early": early,
        "n": len(bases),
    }


def latency_table(bases: dict[str, list[Trace]]) -> dict[str, dict[str, float]]:
    print(
        "1. alert latency after a 4 mm step (s): mean / median / max, misses of n "
        "(streams already alerted before the step are left out: early)"
    )
    print(f"{'trace':18s} {'rule':7s} {'superior':>24s} {'inferior':>24s} {'mean diff':>9s}")
    out: dict[str, dict[str, float]] = {}
    for name, traces in bases.items():
        for rule_name, runner in (("new", run_new), ("former", run_former)):
            up = _latencies(runner, traces, SHIFT_MM)
            down = _latencies(runner, traces, -SHIFT_MM)
            diff = down["mean_s"] - up["mean_s"]
            print(
                f"{name:18s} {rule_name:7s} "
                f"{up['mean_s']:6.2f} {up['median_s']:6.2f} {up['max_s']:6.2f} "
                f"{up['misses']:2d}/{up['n']:<2d} "
                f"{down['mean_s']:6.2f} {down['median_s']:6.2f} {down['max_s']:6.2f} "
                f"{down['misses']:2d}/{down['n']:<2d} {diff:9.2f}  "
                f"early {up['early']}/{down['early']}"
            )
            out[f"{name}/{rule_name}"] = {
                "superior_mean_s": up["mean_s"],
                "inferior_mean_s": down["mean_s"],
                "superior_max_s": up["max_s"],
                "inferior_max_s": down["max_s"],
                "inferior_minus_superior_s": diff,
                "misses": up["misses"] + down["misses"],
                "early": up["early"] + down["early"],
            }
    return out


def offset_table(bases: dict[str, list[Trace]]) -> dict[str, float]:
    print("\n2. offset present from the first frame (4 mm): streams alerted / streams")
    out: dict[str, float] = {}
    for rule_name, runner in (("new", run_new), ("former", run_former)):
        counts = []
        for sign in (1.0, -1.0):
            traces = [t for ts in bases.values() for t in ts]
            hits = sum(
                bool(runner(_noisy(t, 7 + k) + sign * SHIFT_MM)) for k, t in enumerate(traces)
            )
            counts.append(hits / len(traces))
            print(
                f"  {rule_name:7s} {'superior' if sign > 0 else 'inferior':9s} {hits}/{len(traces)}"
            )
        out[rule_name] = float(np.mean(counts))
    return out


def steady_table(bases: dict[str, list[Trace]]) -> dict[str, float]:
    print("\n3. steady breathing at the planned level (60 s): false alerts per stream")
    out: dict[str, float] = {}
    traces = [t for ts in bases.values() for t in ts]
    for rule_name, runner in (("new", run_new), ("former", run_former)):
        alerts = [len(runner(_noisy(t, 300 + k))) for k, t in enumerate(traces)]
        out[rule_name] = float(np.mean(alerts))
        print(f"  {rule_name:7s} {out[rule_name]:.3f} ({sum(alerts)} in {len(traces)} streams)")
    return out


def _holds(seed: int, depth_mm: float) -> Trace:
    signal = breathing.breath_holds(
        AMPLITUDE_MM,
        PERIOD_S,
        FPS,
        hold_durations_s=(25.0, 25.0, 25.0),
        hold_depth_mm=depth_mm,
        creep_mm=1.0,
        free_breathing_s=12.0,
        recovery_s=12.0,
        seed=seed,
    )
    return _noisy(np.asarray(signal.si_mm), seed)


def hold_table(quick: bool) -> dict[str, float]:
    print("\n4. breath-hold treatment, three 25 s holds: alerts per stream")
    seeds = range(4 if quick else 16)
    planned = [_holds(s, 15.0) for s in seeds]
    shallow = [_holds(s, 10.0) for s in seeds]  # every hold 5 mm above the planned level
    hold = MonitorModeValues.BREATH_HOLD
    rows = {
        "new, breath-hold mode, at the planned level": [
            len(run_new(t, -15.0, hold)) for t in planned
        ],
        "new, breath-hold mode, holds 5 mm off": [len(run_new(t, -15.0, hold)) for t in shallow],
        "former, at the planned level": [len(run_former(t)) for t in planned],
    }
    out = {}
    for name, alerts in rows.items():
        out[name] = float(np.mean(alerts))
        print(f"  {name:45s} {out[name]:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer phases, traces and seeds")
    args = parser.parse_args()
    started = time.perf_counter()
    bases = _bases(args.quick)
    latency = latency_table(bases)
    offsets = offset_table(bases)
    steady = steady_table(bases)
    holds = hold_table(args.quick)
    print(f"\ntime {time.perf_counter() - started:.1f} s")
    print(
        json.dumps(
            {
                "benchmark": "intrafraction",
                "protocol_version": DEFAULT_PROTOCOL.version,
                "latency": latency,
                "offset_at_start_detected_fraction": offsets,
                "steady_false_alerts_per_stream": steady,
                "breath_hold_alerts_per_stream": holds,
            }
        )
    )


if __name__ == "__main__":
    main()
