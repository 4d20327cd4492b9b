"""The one rule both trainers follow when a run is resumed with settings of its own.

A resumed run continues *exactly* (same weights, optimizer, schedule, data order and RNG as
an uninterrupted run) only if nothing that shapes the computation changes. So
:func:`plan_resume` compares the saved configs with the ones asked for now and

- allows the settings a trainer names as safe (logging, checkpoint and validation
  intervals: they change what is written, never what is computed);
- refuses every other difference, listing all of them in one message;
- has one explicit path for an everyday need: continuing a *finished* run to more steps
  (as the Hugging Face Trainer and nanoGPT allow). The schedule is then re-planned from
  the current step for the new total; the trainer says so in one line and records it.

:func:`nonfinite_stop` is the one message of a run both trainers stop after too many NaN/Inf
steps in a row.

Follows: the resume semantics of the Hugging Face Trainer (``resume_from_checkpoint``,
continuing past ``max_steps``) and nanoGPT's ``init_from='resume'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reelm.core.errors import ReelmError


@dataclass(frozen=True)
class ResumePlan:
    step: int  # the checkpoint's step
    continues_finished: bool  # a finished run continued to more steps (the schedule is re-planned)
    changed_safely: tuple[str, ...]  # safe settings that differ from the checkpoint's


def differences(saved: dict, now: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, new value)`` for every leaf that differs, nested dicts flattened."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def plan_resume(where: str, *, step: int, saved: dict, now: dict, safe: frozenset[str] | set[str],
                steps_key: str = "steps") -> ResumePlan:
    """Check the configs of a resume (``saved`` -> ``now``, each ``{"section.": dict}``-flattened by the caller).

    ``saved`` and ``now`` map a prefix (``""`` for training settings, ``"model."`` for the model)
    to that config as a dict. Raises :class:`ReelmError` naming every difference that would break
    exactness; returns what the trainer must do otherwise.
    """
    changed: list[tuple[str, Any, Any]] = []
    for prefix in sorted(set(saved) | set(now)):
        changed += differences(saved.get(prefix, {}), now.get(prefix, {}), prefix)
    finished_at = saved.get("", {}).get(steps_key)
    new_total = now.get("", {}).get(steps_key)
    continues = False
    unsafe = []
    for key, a, b in changed:
        if key == steps_key:
            if step >= finished_at and new_total > step:
                continues = True
                continue
            if step >= finished_at:
                unsafe.append(f"{key}={b!r} (the run already ended at step {step}: ask for more steps to continue it)")
            else:
                unsafe.append(f"{key}={b!r} (was {a!r}; an unfinished run resumes on its own schedule: "
                              f"let it finish, then continue it to more steps)")
        elif key not in safe:
            unsafe.append(f"{key}={b!r} (was {a!r})")
    if unsafe:
        allowed = ", ".join(sorted(safe))
        raise ReelmError(f"{where}: cannot resume exactly with {'; '.join(unsafe)}. Resume with the saved settings "
                         f"(only {allowed} and, for a finished run, {steps_key} may change), or start a new run")
    safely = tuple(key for key, _, _ in changed if key != steps_key)
    return ResumePlan(step=step, continues_finished=continues, changed_safely=safely)


def nonfinite_stop(command: str, run_dir, step: int, in_a_row: int) -> str:
    """The message of a run stopped by non-finite losses: what happened, what is intact, what to do next."""
    from reelm.core.checkpoint_format import list_checkpoints

    found = list_checkpoints(run_dir)
    kept = (f"its latest checkpoint, {found[-1][1].name}, is intact and --resume continues from it"
            if found else "no checkpoint was written yet")
    return (f"{command}: stopped at step {step}: the loss or its gradient was NaN/Inf in {in_a_row} steps in a row "
            f"(each skipped); {kept}. Lower the learning rate (--set lr=...) in a new run, or check the data; "
            "--set max_nonfinite_steps=N allows longer runs of bad steps")
