"""The shadow check: does the candidate answer production's own recorded requests as production does?

The reference data is what the candidate's author chose; recorded traffic is
what clients actually send, including regions of the input space the
reference never reaches. Each recorded request was replayed to the candidate
and to production in the same canary (``validation/shadow_replay.py``); this
check compares their answers output by output:

- classification: the flip rate (share of rows whose predicted class
  changes) and, for a binary output, the change in the positive rate;
- regression: quantiles of the absolute and relative change.

Recorded REST ``:classify`` requests are judged on their own answers (figures
named ``classify.*``): the flip rate of the top class (of the one score
against ``decision_threshold`` when a single score is returned, with the
positive rate's change) and the change in the scores. Recorded ``:regress``
requests are judged like a regression output (``regress.*``).

A request the candidate cannot answer while production can is a failure
naming an example. Thresholds and the reasons for their defaults:
``validation/shadow_config.py``. No recorded traffic: skipped, with why.
"""

from __future__ import annotations

import numpy as np

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, turned_off
from servegate.validation.report import Measurement
from servegate.validation.shadow_replay import ReplayResult

NAME = "shadow"


def _not_run(ctx: CheckContext) -> CheckPlan | None:
    early = turned_off(NAME, ctx.config.shadow.enabled)
    if early:
        return early
    if not ctx.config.traffic.logs:
        return CheckPlan(NAME, skipped="no recorded traffic given (traffic.logs in the config, or --traffic)")
    if not ctx.baseline_given:
        return CheckPlan(NAME, skipped="no production version served (first deployment): nothing to compare with")
    result: ReplayResult | None = ctx.shadow
    if result is None or not result.replayed:
        files = len(result.traffic.files) if result else 0
        old = f", {result.traffic.too_old} too old" if result and result.traffic.too_old else ""
        return CheckPlan(NAME, skipped=f"no recorded request to replay in {ctx.config.traffic.logs!r} "
                                       f"({files} files{old})")
    return None


def _candidate_failures(result: ReplayResult) -> CheckPlan | None:
    broken = [r for r in result.replayed if r.candidate.error and not r.production.error]
    if not broken:
        return None
    first = broken[0]
    return CheckPlan(NAME, failed=(
        f"the candidate could not answer {len(broken)} of {len(result.replayed)} recorded requests that "
        f"production answered; e.g. {first.request.where()}: {first.candidate.error}"))


def _answered(result: ReplayResult, kind: str) -> list:
    return [r for r in result.replayed if r.request.kind == kind and not (r.candidate.error or r.production.error)]


def _stack(result: ReplayResult, name: str, kind: str = "predict") -> tuple[np.ndarray, np.ndarray] | str:
    cand, prod = [], []
    for r in _answered(result, kind):
        c, p = r.candidate.outputs.get(name), r.production.outputs.get(name)
        if c is None or p is None:
            return f"output {name!r} missing from the {'candidate' if c is None else 'production'} answer " \
                   f"to {r.request.where()}"
        c, p = np.asarray(c, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if c.shape != p.shape:
            return f"output {name!r} has shape {c.shape} from the candidate, {p.shape} from production " \
                   f"({r.request.where()})"
        cand.append(c.reshape(len(c), -1) if c.ndim else c.reshape(1, 1))
        prod.append(p.reshape(len(p), -1) if p.ndim else p.reshape(1, 1))
    if not cand:
        return "no recorded request was answered by both versions"
    return np.concatenate(cand), np.concatenate(prod)


def _flips(ctx: CheckContext, cand: np.ndarray, prod: np.ndarray, c_class: np.ndarray,
           p_class: np.ndarray) -> list[Measurement]:
    s = ctx.config.shadow
    flip = float(np.mean(c_class != p_class))
    out = [Measurement("flip_rate", flip, s.max_flip_rate, "<=", flip <= s.max_flip_rate)]
    if cand.shape[1] == 1:
        change = float(abs(np.mean(c_class) - np.mean(p_class)))
        out.append(Measurement("positive_rate_change", change, s.max_positive_rate_change, "<=",
                               change <= s.max_positive_rate_change))
    return out


def _classification(ctx: CheckContext, cand: np.ndarray, prod: np.ndarray) -> list[Measurement]:
    if cand.shape[1] == 1:
        threshold = ctx.config.decision_threshold
        return _flips(ctx, cand, prod, cand[:, 0] >= threshold, prod[:, 0] >= threshold)
    return _flips(ctx, cand, prod, cand.argmax(axis=1), prod.argmax(axis=1))


def _top_class(answer: dict[str, np.ndarray]) -> np.ndarray:
    """Each example's top class: its label, since two versions may list their classes in another order;
    its position when the signature returns no classes (every label empty)."""
    best = np.nanargmax(answer["scores"], axis=1)
    labels = answer["classes"]
    if not any(labels.reshape(-1)):
        return best.astype(object)
    return labels[np.arange(len(best)), best]


def _classify_answers(ctx: CheckContext, result: ReplayResult) -> list[Measurement] | str:
    """The replayed ``:classify`` requests: the top class's flips (by label) and the scores' change."""
    rows = []
    for r in _answered(result, "classify"):
        c, p = r.candidate.outputs, r.production.outputs
        if c["scores"].shape != p["scores"].shape:
            return (f":classify answers have {c['scores'].shape[1]} classes from the candidate, "
                    f"{p['scores'].shape[1]} from production ({r.request.where()})")
        rows.append((c, p))
    cand = np.concatenate([c["scores"] for c, _ in rows])
    prod = np.concatenate([p["scores"] for _, p in rows])
    if cand.shape[1] == 1:
        figures = _classification(ctx, cand, prod)
    else:
        top = [(_top_class(c), _top_class(p)) for c, p in rows]
        figures = _flips(ctx, cand, prod, np.concatenate([t[0] for t in top]), np.concatenate([t[1] for t in top]))
    change = np.abs(cand - prod).reshape(-1)
    figures += [Measurement("score_abs_change_p50", float(np.nanpercentile(change, 50))),
                Measurement("score_abs_change_p99", float(np.nanpercentile(change, 99)))]
    return figures


def _regression(ctx: CheckContext, cand: np.ndarray, prod: np.ndarray) -> list[Measurement]:
    s = ctx.config.shadow
    absolute = np.abs(cand - prod).reshape(-1)
    scale = np.abs(prod).reshape(-1)
    relative = absolute / np.maximum(np.maximum(scale, np.median(scale)), 1e-12)
    out = [Measurement("abs_change_p50", float(np.percentile(absolute, 50)))]
    p99 = float(np.percentile(absolute, 99))
    out.append(Measurement("abs_change_p99", p99, s.max_abs_change_p99, "<=",
                           s.max_abs_change_p99 is None or p99 <= s.max_abs_change_p99))
    out.append(Measurement("rel_change_p50", float(np.percentile(relative, 50))))
    rel99 = float(np.percentile(relative, 99))
    out.append(Measurement("rel_change_p99", rel99, s.max_rel_change_p99, "<=",
                           s.max_rel_change_p99 is None or rel99 <= s.max_rel_change_p99))
    out.append(Measurement("max_abs_change", float(absolute.max())))
    return out


def _one(ctx: CheckContext, out: OutputData, result: ReplayResult) -> CheckPlan:
    stacked = _stack(result, out.name)
    if isinstance(stacked, str):
        return CheckPlan(NAME, failed=stacked)
    cand, prod = stacked
    figures = _classification(ctx, cand, prod) if out.task == "classification" else _regression(ctx, cand, prod)
    return CheckPlan(NAME, ours=ctx.tag(out, figures))


def _examples(ctx: CheckContext, result: ReplayResult, kind: str) -> CheckPlan:
    """The figures of the replayed ``:classify`` or ``:regress`` requests, named ``classify.*`` / ``regress.*``."""
    if kind == "classify":
        figures = _classify_answers(ctx, result)
    else:
        stacked = _stack(result, "outputs", "regress")
        figures = stacked if isinstance(stacked, str) else _regression(ctx, *stacked)
    if isinstance(figures, str):
        return CheckPlan(NAME, failed=figures)
    for figure in figures:
        figure.output = kind
    return CheckPlan(NAME, ours=figures)


def _parts(ctx: CheckContext, result: ReplayResult) -> list[CheckPlan]:
    """One plan per validated output for the predict requests, one per other kind replayed."""
    kinds = {r.request.kind for r in result.replayed if not r.production.error}
    parts = [_one(ctx, out, result) for out in ctx.outputs] if "predict" in kinds else []
    return parts + [_examples(ctx, result, kind) for kind in ("classify", "regress") if kind in kinds]


def _notes(result: ReplayResult) -> list[str]:
    t = result.traffic
    notes = [f"{len(result.replayed)} recorded requests replayed from {len(t.files)} files"]
    if t.too_old:
        notes.append(f"{t.too_old} records older than traffic.max_age_hours left out")
    both_failed = sum(1 for r in result.replayed if r.production.error)
    if both_failed:
        notes.append(f"{both_failed} requests production could not answer either were left out")
    if result.not_sent:
        notes.append(f"{result.not_sent} requests not replayed before the validation deadline")
    notes += [f"skipped {part}" for part in t.skipped]
    return notes


def plan(ctx: CheckContext) -> CheckPlan:
    early = _not_run(ctx)
    if early:
        return early
    result: ReplayResult = ctx.shadow
    failed = _candidate_failures(result)
    if failed:
        return failed
    combined = CheckPlan(NAME, notes=_notes(result))
    combined.ours.append(Measurement("requests_replayed", float(len(result.replayed))))
    for part in _parts(ctx, result):
        if part.failed:
            return part
        combined.ours += part.ours
    return combined


CHECK = Check(NAME, "recorded production traffic (traffic.logs or --traffic) and a production version in the canary",
              plan)
