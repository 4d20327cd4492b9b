"""``reelm demo``: the whole pipeline in one run folder, stage after stage, resumable, with a report at the end.

Each stage prints a one-line summary when it finishes and leaves ``DIR/stages/NAME.json``;
a re-run of the same command reuses finished stages and resumes an interrupted one from
its last checkpoint. ``DIR/demo.json`` records the settings: a folder made with other
settings is refused rather than mixed. The last stage prints the summary table and writes
``DIR/report.html``, which links the tokenizer's and the generation's own eval reports, and
``DIR/samples.png``, its sample sheet at a size to commit (README's ``docs/demo.png``).

Follows: nanochat's speedrun (one script, every stage, a report card at the end).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from reelm.core.atomic import write_json
from reelm.core.config import load_json, to_dict
from reelm.demo.demo_config import DemoConfig
from reelm.demo.stages import STAGES
from reelm.core.errors import ReelmError

CONFIG_FILE = "demo.json"
DOCS_SHEET = "samples.png"  # the report's sample sheet, small enough to commit (README's docs/demo.png)


def run_demo(out: str | Path, cfg: DemoConfig, *, progress: bool = True, log=print) -> dict:
    """Run (or finish) the demo in ``out``; returns the stages' records and the final summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    (out / "stages").mkdir(exist_ok=True)
    records = {}
    began = time.perf_counter()
    for number, stage in enumerate(STAGES, start=1):
        marker = out / "stages" / f"{stage.name}.json"
        if marker.is_file():
            records[stage.name] = load_json(marker)
            log(f"[{number}/{len(STAGES) + 1}] {stage.title}: done before ({records[stage.name]['line']})")
            continue
        log(f"[{number}/{len(STAGES) + 1}] {stage.title} ...")
        stage_began = time.perf_counter()
        record = stage.run(cfg, out, progress)
        record["seconds"] = round(time.perf_counter() - stage_began, 1)
        write_json(marker, record)
        records[stage.name] = record
        log(f"[{number}/{len(STAGES) + 1}] {stage.title}: {record['line']} ({record['seconds']:.0f} s)")
    from reelm.demo.report_card import contact_sheet_for_docs, write_demo_report

    log(f"[{len(STAGES) + 1}/{len(STAGES) + 1}] summary and report")
    summary = load_json(records["generate"]["summary_file"])
    report, lines = write_demo_report(out, cfg, records, summary)
    contact_sheet_for_docs(out, out / DOCS_SHEET)
    for line in lines:
        log(line)
    log(f"reelm demo: {time.perf_counter() - began:.0f} s this run; report: {report}")
    return {"stages": records, "summary": summary, "report": str(report)}


def _check_settings(out: Path, cfg: DemoConfig) -> None:
    path = out / CONFIG_FILE
    settings = to_dict(cfg)
    if path.is_file():
        # a setting added since the folder was made ran as its default then: a saved run without it resumes
        defaults = json.loads(json.dumps(to_dict(DemoConfig())))
        saved = {**{k: v for k, v in defaults.items() if k not in load_json(path)}, **load_json(path)}
        if saved != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise ReelmError(f"{out} holds a demo run made with other settings ({', '.join(changed)} differ); "
                             "re-run it with the same flags, or choose another --out")
        return
    write_json(path, settings)
