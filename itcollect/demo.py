"""``itcollect demo``: the whole pipeline, offline, on the bundled local model.

init -> ingest the bundled samples -> plan a small mix -> simulate on the local llama.cpp server
-> judge (the same local model, llama.cpp's JSON-schema output) -> filter -> export --format all
-> stats. Each step is the real command (same code, same
contract as a user typing it), run in this process so the heavy imports happen once. Every step is
idempotent, so a re-run reuses the workspace and the request ledger and finishes fast.

The bundled SmolLM2-135M shows the plumbing, not translation quality: the demo config is lenient
where the tiny model cannot be good (short answers, language checks as warnings) so that
dialogues complete and the export is not empty; a real endpoint is one option away.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itcollect.config import CONFIG_FILE, DEFAULT_CONFIG_TEXT, default_config, parse_config
from itcollect.kernel.errors import InputError, ItcollectError
from itcollect.llm.local import BUNDLED_MODEL_NAME
from itcollect.store.interfaces import DemoStore

DEFAULT_DEMO_DIR = "itcollect-demo"
DEMO_DIALOGUES = 16  # 24 took 6 min on 2 idle cores (82 calls, ~4 s each, mostly prompt evaluation)
DEMO_SEED = 1
EXPORT_SUBDIR = "export"
#: Hand-written example dialogues (package data) that the demo imports next to the simulated ones:
#: they show `import`, and they keep the export from being empty when the tiny model fails every
#: simulated dialogue's validation.
DEMO_DIALOGUES_FILE = "demo_dialogues.jsonl"

#: What the demo workspace changes against the default config: (section, key) -> value.
#: A small, fast mix over all four languages and both instruction languages; short answers; few
#: retries; the local server's one-request-at-a-time pace.
DEMO_SETTINGS: dict[tuple[str, str], Any] = {
    ("llm", "concurrency"): 2,
    ("llm", "timeout_s"): 120.0,
    ("llm", "max_retries"): 2,
    ("llm", "circuit_breaker_failures"): 8,
    ("llm.assistant", "model"): BUNDLED_MODEL_NAME,
    ("llm.assistant", "temperature"): 0.7,
    ("llm.assistant", "max_tokens"): 160,
    ("llm.annotator", "temperature"): 0.9,
    ("llm.annotator", "max_tokens"): 80,
    # Every language appears; most dialogues translate into English, the one target a 135M model
    # manages often enough for dialogues to pass validation (into zh/de/fr it mostly answers in
    # English, and those dialogues fail with that reason: the demo shows failures too).
    ("mix", "pairs"): {"zh-en": 3, "de-en": 3, "fr-en": 3, "en-zh": 1, "en-de": 1, "en-fr": 1},
    ("mix", "instruction_langs"): {"en": 0.75, "zh": 0.25},
    ("mix", "turns"): {"2": 0.75, "3": 0.25},
    ("mix", "must_include_share"): 0.0,
    # One re-sample per turn: the tiny model rarely fixes a failed turn, and each try costs seconds.
    ("simulate", "max_turn_retries"): 1,
    # The judge: llama.cpp's server turns the judgement's JSON schema into a grammar, so even a 135M
    # model answers with a well-formed judgement (its content is noise; the stage is what is shown).
    ("llm.judge", "response_format"): "json_object",
    ("llm.judge", "max_tokens"): 200,
    ("local", "n_ctx"): 2048,
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def demo_config_text(settings: dict[tuple[str, str], Any] | None = None,
                     base_text: str = DEFAULT_CONFIG_TEXT) -> str:
    """The default config with the demo's values written in place (comments kept, each changed
    line marked), so the demo workspace's config documents itself like any other."""
    settings = DEMO_SETTINGS if settings is None else settings
    defaults = default_config()
    # Keep only keys this version's config knows (a key another stage has not added yet is skipped).
    wanted: dict[tuple[str, str], Any] = {}
    for (section, key), value in settings.items():
        node: Any = defaults
        for part in section.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and key in node:
            wanted[(section, key)] = value
    out: list[str] = []
    section = ""
    done: set[tuple[str, str]] = set()
    header = re.compile(r"^\[([A-Za-z0-9_.\"-]+)\]\s*$")
    assignment = re.compile(r"^([A-Za-z0-9_\"-]+)\s*=")
    for line in base_text.splitlines():
        m = header.match(line)
        if m:
            section = m.group(1)
        else:
            a = assignment.match(line)
            if a and (section, a.group(1).strip('"')) in wanted:
                k = a.group(1).strip('"')
                line = f"{a.group(1)} = {_toml_value(wanted[(section, k)])}  # itcollect demo"
                done.add((section, k))
        out.append(line)
    missing = set(wanted) - done
    if missing:  # pragma: no cover - a default key written on more than one line
        raise ItcollectError(f"demo config: could not set {sorted(missing)}")
    text = "\n".join(out) + "\n"
    parse_config(text)  # the demo config must validate like any user's
    return text


def samples_dir() -> Path:
    """The bundled news samples (package ``itcollect.samples`` = data/samples in the repo)."""
    root = importlib.resources.files("itcollect.samples")
    path = Path(str(root))
    if not path.is_dir():  # pragma: no cover - zipped installs
        raise InputError("the bundled samples are not on the file system (zipped install?)", path=str(root))
    return path


def sample_files(kind: str = "sources") -> list[Path]:
    """Sample files: ``sources`` for ingest, ``dialogues`` for import (files under a folder or with
    a name containing 'dialogues')."""
    files = []
    for p in sorted(samples_dir().rglob("*")):
        if not p.is_file() or p.name.startswith((".", "__")) or "__pycache__" in p.parts:
            continue
        if p.suffix in (".py", ".pyc", ".md"):
            continue
        is_dialogues = "dialogues" in p.name or "dialogues" in p.parent.name
        if (kind == "dialogues") == is_dialogues:
            files.append(p)
    return files


def demo_dialogues_file() -> Path:
    """The bundled example dialogues (package data of ``itcollect``)."""
    path = Path(str(importlib.resources.files("itcollect") / DEMO_DIALOGUES_FILE))
    if not path.is_file():
        raise InputError("the bundled demo dialogues are missing from the installed package", path=str(path))
    return path


@dataclass
class DemoResult:
    root: Path
    export_dir: Path
    seconds: float
    stats: dict[str, Any]
    steps: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return int(self.stats.get("filter", {}).get("kept", 0))


def _available_commands() -> set[str]:
    import click

    from itcollect.cli import COMMANDS, cli

    ctx = click.Context(cli)
    return {name for name in COMMANDS if cli.get_command(ctx, name) is not None}


def _invoke(args: list[str]) -> None:
    """Run one itcollect command in this process (the same code path as the console script)."""
    import click

    from itcollect.cli import cli

    try:
        code = cli.main(args=args, prog_name="itcollect", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        raise ItcollectError(f"itcollect {' '.join(args[2:3])}: {exc.format_message()}") from None
    if code not in (None, 0):
        raise ItcollectError(f"'itcollect {' '.join(args)}' exited with status {code}")


def _counts(root: Path) -> dict[str, int]:
    """How far an existing demo workspace got (so a re-run skips what is done)."""
    from itcollect.workspace import Workspace

    with Workspace(root) as ws:
        store: DemoStore = ws.store
        specs = store.spec_counts()
        return {"sources": sum(store.source_counts_by_lang().values()),
                "open_specs": int(specs.get("pending", 0)) + int(specs.get("in_progress", 0))}


def run_demo(directory: str | Path = DEFAULT_DEMO_DIR, *, base_url: str | None = None, model: str | None = None,
             dialogues: int = DEMO_DIALOGUES, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole pipeline in ``directory`` (created, or reused when it is a workspace).

    Without ``base_url`` the simulated annotator and the assistant are the bundled local model
    (``simulate --local``); with it, the endpoint given. A stage whose command is not installed
    is skipped and named in ``DemoResult.missing``.
    """
    from itcollect.stats.report import collect_stats
    from itcollect.workspace import Workspace, init_workspace

    started = time.monotonic()
    root = Path(directory).resolve()
    ws_flag = ["-C", str(root)]
    have = _available_commands()
    result = DemoResult(root=root, export_dir=root / EXPORT_SUBDIR, seconds=0.0, stats={})
    total = 9

    @contextmanager
    def step(n: int, title: str) -> Iterator[None]:
        echo(f"\n== [{n}/{total}] {title}")
        t0 = time.monotonic()
        yield
        result.steps.append(title)
        echo(f"   ({time.monotonic() - t0:.1f} s)")

    def need(command: str) -> bool:
        if command in have:
            return True
        result.missing.append(command)
        echo(f"   skipped: 'itcollect {command}' is not available in this installation")
        return False

    with step(1, f"workspace {root}"):
        if (root / CONFIG_FILE).is_file():
            echo("   reusing the existing workspace (its config, store and request ledger)")
        else:
            init_workspace(root).close()
            (root / CONFIG_FILE).write_text(demo_config_text(), encoding="utf-8")
            echo(f"   created; demo settings marked '# itcollect demo' in {root / CONFIG_FILE}")

    with step(2, "ingest the bundled news samples"):
        sources = sample_files("sources")
        if not sources:
            raise InputError("no sample files found in the installed package itcollect.samples",
                             path=str(samples_dir()))
        have_sources = _counts(root)["sources"]
        if have_sources:
            echo(f"   the workspace already holds {have_sources} sources; not ingesting again")
        elif need("ingest"):
            _invoke([*ws_flag, "ingest", *map(str, sources)])

    with step(3, "import hand-written example dialogues"):
        dialogue_files = [demo_dialogues_file(), *sample_files("dialogues")]
        if need("import"):
            _invoke([*ws_flag, "import", *map(str, dialogue_files)])

    with step(4, f"plan {dialogues} dialogues"):
        if need("plan"):
            _invoke([*ws_flag, "plan", "--dialogues", str(dialogues), "--seed", str(DEMO_SEED)])

    endpoint = f"{base_url} ({model})" if base_url else "the bundled local model (llama.cpp, 127.0.0.1)"
    with step(5, f"simulate on {endpoint}"):
        open_specs = _counts(root)["open_specs"]
        if not open_specs:
            echo("   every planned dialogue is already simulated (done or failed); nothing to send")
        elif need("simulate"):
            args = [*ws_flag, "simulate"]
            args += ["--base-url", base_url] if base_url else ["--local"]
            if model:
                args += ["--model", model]
            _invoke(args)

    with step(6, f"judge every answer on {endpoint} (a 135M judge's scores are noise)"):
        if need("judge"):
            args = [*ws_flag, "judge"]
            args += ["--base-url", base_url] if base_url else ["--local"]
            if model:
                args += ["--model", model]
            _invoke(args)

    with step(7, "filter"):
        if need("filter"):
            _invoke([*ws_flag, "filter"])

    with step(8, f"export --format all to {result.export_dir}"):
        if need("export"):
            _invoke([*ws_flag, "export", "--hf", str(result.export_dir), "--format", "all"])

    with step(9, "stats"):
        if need("stats"):
            _invoke([*ws_flag, "stats"])
        with Workspace(root) as ws:
            result.stats = collect_stats(ws.store, ws.config)

    result.seconds = time.monotonic() - started
    return result


def summary(result: DemoResult, *, local: bool = True) -> str:
    """What the user reads last: where the dataset is, what it shows, and how to go real."""
    lines = [""]
    calls = result.stats.get("calls", {})
    dlg = result.stats.get("dialogues", {})
    lines.append(f"Demo finished in {result.seconds:.0f} s: {dlg.get('total', 0)} dialogues, "
                 f"{result.kept} kept by the filter; {calls.get('sent', 0)} LLM calls sent so far in this "
                 f"workspace ({calls.get('from_ledger', 0)} answered from the ledger).")
    origins = (result.stats.get("mix") or {}).get("origin") or {}
    specs = result.stats.get("specs") or {}
    if origins.get("simulated") or specs.get("total"):
        sim = origins.get("simulated") or {}
        lines.append(f"  simulated: {specs.get('done', 0)} of {specs.get('total', 0)} planned dialogues passed "
                     f"simulate's checks ({specs.get('failed', 0)} failed with a reason: itcollect -C "
                     f"{result.root} stats); {sim.get('kept', 0)} kept by the filter")
    if origins.get("imported"):
        imp = origins["imported"]
        lines.append(f"  imported:  {imp.get('count', 0)} hand-written example dialogues, {imp.get('kept', 0)} kept")
    judge = result.stats.get("judge") or {}
    if judge.get("judged") or judge.get("unparsed"):
        mean = (judge.get("score") or {}).get("mean")
        lines.append(f"  judged:    {judge['judged']} answers ({judge['unparsed']} replies unreadable)"
                     + (f", mean MQM score {mean:g}" if mean is not None else "")
                     + (" — a 135M judge's scores are noise" if local else ""))
    hf = result.export_dir / "hf"
    if hf.exists():
        lines.append(f"  dataset:   {hf}   (datasets.load_from_disk)")
        lines.append(f"  also:      {result.export_dir}/parquet, sharegpt.json, dataset_info.json, README.md")
    lines.append(f"  workspace: {result.root}   (itcollect -C {result.root} stats)")
    if result.missing:
        lines.append(f"  not run (command missing in this installation): {', '.join(result.missing)}")
    if local:
        lines.append("")
        lines.append("These dialogues come from SmolLM2-135M, a tiny model that runs on any CPU: they show")
        lines.append("the pipeline (multi-turn calls, ledger, provenance, filter, export), not translation quality.")
        lines.append("The same pipeline on a real model (any OpenAI-compatible endpoint, key in $OPENAI_API_KEY):")
        lines.append("  itcollect demo real-demo --base-url http://host:8000/v1 --model NAME")
    return "\n".join(lines)
