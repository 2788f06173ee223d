"""The contract check: does the canary serve the signature production's clients call?

Production's clients send every input production declares, with its dtype and
a shape that fits, and read the outputs production returns. So a change is
*breaking* when the candidate

- drops or adds an input (TF Serving requires every input of a signature),
- changes an input's or a kept output's dtype,
- changes a shape incompatibly (different rank, or two known sizes that differ),
- drops an output.

Adding an output is not breaking. This is servegate's code, not a GX
expectation: a signature is a small structured record, not rows of a table.
"""

from __future__ import annotations

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, turned_off
from servegate.validation.report import Measurement
from servegate.validation.signature import Signature, TensorSpec, parse_signature


def _shape_change(old: TensorSpec, new: TensorSpec) -> str | None:
    if old.shape is None or new.shape is None:
        return None
    if len(old.shape) != len(new.shape):
        return f"rank {len(old.shape)} -> {len(new.shape)}"
    for i, (a, b) in enumerate(zip(old.shape, new.shape)):
        if a is not None and b is not None and a != b:
            return f"dimension {i}: {a} -> {b}"
    return None


def breaking_changes(production: Signature, candidate: Signature) -> list[str]:
    """Every difference that would break a client of ``production``, as readable lines."""
    changes: list[str] = []
    for name in sorted(set(production.inputs) - set(candidate.inputs)):
        changes.append(f"input {name!r} removed")
    for name in sorted(set(candidate.inputs) - set(production.inputs)):
        changes.append(f"input {name!r} added (clients do not send it)")
    for kind, old_side, new_side in (("input", production.inputs, candidate.inputs),
                                     ("output", production.outputs, candidate.outputs)):
        for name in sorted(set(old_side) & set(new_side)):
            old, new = old_side[name], new_side[name]
            if old.dtype != new.dtype:
                changes.append(f"{kind} {name!r} dtype {old.dtype} -> {new.dtype}")
            shape = _shape_change(old, new)
            if shape:
                changes.append(f"{kind} {name!r} shape {list(old.shape or [])} -> {list(new.shape or [])} ({shape})")
    for name in sorted(set(production.outputs) - set(candidate.outputs)):
        changes.append(f"output {name!r} removed")
    return changes


def plan(ctx: CheckContext) -> CheckPlan:
    cfg = ctx.config.contract
    off = turned_off("contract", cfg.enabled)
    if off:
        return off
    if ctx.production_signature is None:
        return CheckPlan("contract", skipped="no production signature given (first deployment)")
    changes = breaking_changes(parse_signature(ctx.production_signature, ctx.config.signature_name), ctx.served)
    allowed = cfg.allow_breaking_change
    ok = not changes or allowed
    m = Measurement("breaking_changes", float(len(changes)), None if allowed else 0.0, "<=", ok)
    if not changes:
        note = "served signature is compatible with production's"
    else:
        note = ("breaking changes (allowed by config): " if allowed else "breaking changes: ") + "; ".join(changes)
    return CheckPlan("contract", ours=[m], notes=[note], failed=None if ok else note)


CHECK = Check("contract", "production's signature", plan)
