"""Statistics over a workspace: the ``stats --json`` contract plus human-readable tables.

Each stage contributes a section computed through the store's API; the contract keys
(sources, ingest, specs, dialogues, turns, calls, filter, judge, compare) are always present.
"""

from __future__ import annotations

from typing import Any

from itcollect.config import Config
from itcollect.store.interfaces import StatsStore


def collect_stats(store: StatsStore, config: Config | None = None) -> dict[str, Any]:
    by_lang = store.source_counts_by_lang()
    dialogues = store.dialogue_counts()
    stats: dict[str, Any] = {
        "sources": {"total": sum(by_lang.values()), "by_lang": by_lang},
        "ingest": store.ingest_totals(),
        "specs": store.spec_counts(),
        "dialogues": {"total": dialogues["total"], "by_origin": dialogues["by_origin"],
                      "by_status": dialogues["by_status"]},
        "turns": {"total": store.turn_count()},
        "calls": store.call_totals(),
        "filter": store.filter_totals(),
    }
    stats["ingest"]["files"] = [
        {"path": r["path"], "format": r["format"], "lines": r["lines"], "kept": r["kept"], "dropped": r["dropped"]}
        for r in store.ingest_runs()]
    # Per human annotator: the quality figures (the contract's keys), the agreement on overlap specs,
    # and the session counts behind them (skipped and why, edits, regenerations, undos, flags,
    # decisions, controls, errors reviewers marked).
    from itcollect.stats.quality import quality_figures

    stats.update(quality_figures(store, config))
    # simulate --batch-api: batches, in flight, answers and their (batch-priced) cost.
    stats["batch"] = store.batch_stats()
    # Realised mix vs the configured target, request diversity, imports and exports (corpus_stats).
    from itcollect.stats.corpus import corpus_sections

    stats.update(corpus_sections(store, config))
    # The LLM judge: scores, errors, compliance, agreement with reviewers (itcollect judge).
    from itcollect.stats.judge import judge_section

    stats["judge"] = judge_section(store, config)
    # Several systems per turn: win rates, head to head, strengths, cost (simulate/session --compare).
    from itcollect.stats.compare import compare_section

    stats["compare"] = compare_section(store, config)
    return stats


def render_stats(stats: dict[str, Any]) -> str:
    """Plain-text tables (rich renders them on a terminal; this is the pipe-friendly form)."""
    lines: list[str] = []

    def section(title: str) -> None:
        lines.append("")
        lines.append(title)
        lines.append("-" * len(title))

    section("Sources")
    lines.append(f"  total       {stats['sources']['total']:>10,}")
    for lang, n in stats["sources"]["by_lang"].items():
        lines.append(f"  {lang:<11} {n:>10,}")
    ingest = stats["ingest"]
    if ingest.get("files"):
        section("Ingest (per file)")
        reasons = sorted({r for f in ingest["files"] for r in f["dropped"]})
        header = f"  {'file':<40} {'format':<8} {'kept':>8}" + "".join(f" {r:>12}" for r in reasons)
        lines.append(header)
        for f in ingest["files"]:
            name = f["path"] if len(f["path"]) <= 40 else "…" + f["path"][-39:]
            lines.append(f"  {name:<40} {f['format']:<8} {f['kept']:>8,}"
                         + "".join(f" {f['dropped'].get(r, 0):>12,}" for r in reasons))
        lines.append(f"  {'total':<40} {'':<8} {ingest['kept']:>8,}"
                     + "".join(f" {ingest['dropped'].get(r, 0):>12,}" for r in reasons))
    specs = stats["specs"]
    if specs["total"]:
        section("Specs")
        lines.append("  " + "  ".join(f"{k} {v:,}" for k, v in specs.items()))
    d = stats["dialogues"]
    if d["total"]:
        section("Dialogues")
        lines.append(f"  total {d['total']:,}  " + "  ".join(f"{k} {v:,}" for k, v in d["by_origin"].items()))
        lines.append(f"  turns {stats['turns']['total']:,}")
    calls = stats["calls"]
    if calls["sent"] or calls["from_ledger"] or calls["failed"]:
        section("LLM calls")
        lines.append(f"  sent {calls['sent']:,}  from ledger {calls['from_ledger']:,}  failed {calls['failed']:,}")
        lines.append(f"  tokens {calls['prompt_tokens']:,} in / {calls['completion_tokens']:,} out"
                     f"  cost ${calls['cost_usd']:.4f}")
        batch = stats.get("batch") or {}
        if batch.get("batches"):
            lines.append(f"  batch API: {batch['batches']:,} batches ({batch['in_flight']:,} in flight, "
                         f"{batch['calls_batched']:,} calls out), {batch['answered']:,} answers, "
                         f"${batch['cost_usd']:.4f} at batch prices, {batch['failed']:,} resubmitted")
    filt = stats["filter"]
    if filt["kept"] or filt["dropped"]:
        section("Filter")
        lines.append(f"  kept {filt['kept']:,}  dropped {filt['dropped']:,}")
        for reason, n in filt["reasons"].items():
            lines.append(f"    {reason:<28} {n:>8,}")
    annotators = stats.get("annotator_details") or {}
    if annotators:
        section("Annotators")
        lines.append(f"  {'name':<20} {'dialogues':>9} {'skipped':>7} {'turns':>6} {'edits':>6} {'regen':>6}"
                     f" {'median/dialogue':>16}  skip reasons")
        for name, a in annotators.items():
            if "median_seconds_per_dialogue" not in a:  # no session of their own (e.g. a reviewer)
                continue
            med = a["median_seconds_per_dialogue"]
            med_text = "-" if med is None else f"{int(med) // 60}m{int(med) % 60:02d}s"
            skip_reasons = ", ".join(f"{k} {v}" for k, v in a["skip_reasons"].items())
            lines.append(f"  {name:<20} {a['dialogues']:>9,} {a['skipped']:>7,} {a['turns']:>6,} {a['edits']:>6,}"
                         f" {a['regenerations']:>6,} {med_text:>16}  {skip_reasons}")
    from itcollect.stats.compare import render_compare
    from itcollect.stats.corpus import render_corpus
    from itcollect.stats.judge import render_judge

    lines += render_judge(stats)
    lines += render_compare(stats)
    lines += render_corpus(stats)
    return "\n".join(lines).lstrip("\n")
