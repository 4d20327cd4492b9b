"""Run every case of the bad-media corpus through every entry point and print the table of what happened.

Usage (writes ``tests/bad_media_table.md`` beside this file, and prints it)::

    python tests/bad_media_table.py [--out PATH]

Each cell is what was observed (not what was expected): **used**, **refused** with the
reason of its one error line, **skipped** by a batch job with the reason it recorded, or
**n/a**; a cell that differs from :func:`entry_points.expected` is marked "UNEXPECTED". Below
the table, the exact line each refusal printed for one command, and the timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bad_media import make_corpus  # noqa: E402
from entry_points import BATCH, PER_FILE, build_env, expected  # noqa: E402


def short(outcome) -> str:
    from reelm.data import video_read

    reasons = [r for r in (video_read.NOT_FOUND, video_read.NOT_MEDIA, video_read.NO_VIDEO_STREAM, video_read.CORRUPT,
                           video_read.NO_FRAMES, video_read.UNREADABLE) if r in outcome.message]
    reasons.sort(key=outcome.message.index)  # the reason comes first; a library's detail may hold another phrase
    if outcome.kind == "used":
        return "used, resized to fit" if "(resized" in outcome.message else "used"
    if outcome.kind == "refused":
        return f"refused: {reasons[0] if reasons else outcome.message[:60]}"
    if outcome.kind == "skipped":
        kind = outcome.message.split(":")[0]
        return f"skipped ({kind}: {reasons[0]})" if reasons and reasons[0] != kind else f"skipped ({kind})"
    return f"{outcome.kind}: {outcome.message[:80]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("bad_media_table.md"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(Path(tmp) / "corpus")
        env = build_env(Path(tmp) / "env")
        results: dict[str, dict[str, object]] = {entry: {} for entry in [*PER_FILE, *BATCH]}
        for entry, run in PER_FILE.items():
            for case, path in corpus.items():
                results[entry][case] = run(path, env)
        for entry, run in BATCH.items():
            try:
                results[entry] = run(corpus, env)
            except ImportError as exc:  # reelm eval reconstruct before reelm.eval.adherence lands
                from entry_points import Outcome

                results[entry] = {case: Outcome("n/a", f"cannot run: {exc}") for case in corpus}
    entries = list(results)
    lines = ["| case | " + " | ".join(entries) + " |", "|---" * (len(entries) + 1) + "|"]
    unexpected = 0
    for case in corpus:
        cells = []
        for entry in entries:
            outcome = results[entry][case]
            cell = short(outcome)
            if outcome.kind not in expected(entry, case).split(" or ") and not outcome.message.startswith("cannot run"):
                cell += f" UNEXPECTED (expected {expected(entry, case)})"
                unexpected += 1
            cells.append(cell)
        lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    sample = "tokenizer encode"
    lines += ["", f"The line each refusal printed (`reelm {sample}`; the other commands print the same reason):", ""]
    lines += [f"- `{case}`: `{results[sample][case].message}`" for case in corpus
              if results[sample][case].kind == "refused"]
    slowest = max(((o.seconds, entry, case) for entry in PER_FILE for case, o in results[entry].items()))
    lines += ["", f"{len(corpus)} cases x {len(entries)} entry points in {time.perf_counter() - began:.0f} s "
              f"(slowest single case: {slowest[1]} on `{slowest[2]}`, {slowest[0]:.1f} s); "
              f"{unexpected} unexpected outcomes."]
    table = "\n".join(lines) + "\n"
    args.out.write_text(table)
    print(table)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
