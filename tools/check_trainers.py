"""Check that the trainers take the export as it is: two optimizer steps in TRL and in LLaMA-Factory.

    python tools/check_trainers.py [--cache DIR] [--trainers trl,llamafactory] [--work DIR] [--require-dpo]

1. An export built with the real CLI in a temporary folder: ``itcollect init``, ``ingest`` of
   ``data/samples`` and of the parallel news corpus of ``tests/responders.py`` (written out as TSVs
   with references, one per source language), ``plan``, ``simulate`` against the test suite's
   OpenAI-compatible loopback server (``python -m tests.fakeserver``, a free port on 127.0.0.1, the
   deterministic ``systems_responder`` of ``tests/responders.py``) as ``simulate --compare`` of two
   systems on it (``fake-model`` and ``fake-model-2``, whose answers the responder marks and its judge
   scores lower, so every judged turn has a strict winner: one preference row), ``import`` of the
   shipped demo dialogues, ``filter``, ``export --format all``.
2. Per trainer, its own virtualenv under ``--cache`` (made once and reused while its pins are the same:
   LLaMA-Factory pins older ``datasets``/``transformers`` than TRL): ``torch==2.13.0`` first (on these
   machines the CPU build, from a file on disk; any other torch request downloads a CUDA build of several
   GB), then the trainer with a constraint file that holds torch at that version.
3. In each virtualenv, a tiny randomly initialised Llama (2 layers, hidden size 64) and a byte-level BPE
   tokenizer trained on the exported text, wrapped as a ``PreTrainedTokenizerFast`` with a chat template,
   saved to a temporary folder; nothing comes from a hub (``HF_HUB_OFFLINE=1``).
4. Two optimizer steps on the CPU:
   * TRL: ``SFTTrainer`` on ``OUT/hf`` (the ``messages`` column, TRL's conversational format) and
     ``DPOTrainer`` on ``OUT/dpo`` (conversational ``prompt``/``chosen``/``rejected``);
   * LLaMA-Factory: ``llamafactory-cli train`` with ``stage: sft`` on the ``dataset_info.json`` entry of
     the ShareGPT export, and ``stage: dpo`` on the entry with ``"ranking": true``.

It prints, per trainer and stage, the rows exported against the rows the trainer loaded (TRL: the
length of the trainer's prepared train dataset; LLaMA-Factory: the ``Num examples`` its trainer logs)
and exits 1 on any failure or mismatch (a row the trainer dropped is a mismatch). A preference stage
is skipped, and says so, while the export holds no preference rows; ``--require-dpo`` makes that a
failure.

It lives in ``tools/`` rather than ``benchmarks/``: it measures nothing, it passes or fails (CI runs its
TRL half). Run from a virtualenv with itcollect installed (``pip install -e '.[dev]'``: the loopback
server needs the test extras). The same file is also what runs inside the trainers' virtualenvs
(``_inner ...``): that half imports nothing from itcollect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"
#: what each trainer's virtualenv installs after torch, with torch held by a constraint file
TRAINERS: dict[str, list[str]] = {
    "trl": ["trl==1.16.0"],
    "llamafactory": ["llamafactory==0.9.5"],
}
#: after the install, in the trainer's virtualenv. PyPI's torchvision and torchaudio wheels are CUDA builds
#: (they link libc10_cuda.so) and fail to load against the CPU torch: transformers then cannot even import
#: LlamaConfig while torchvision is installed, and LLaMA-Factory imports torchaudio at module level (in
#: ``data/mm_plugin.py``) although its text stages never call it. So torchvision goes, and torchaudio
#: keeps its Python code without its compiled extension (torchaudio's loader takes a missing extension
#: as "not available", as in a pex deployment).
_CPU_ONLY_AUDIO_VISION = (
    "import importlib.util, pathlib, subprocess, sys\n"
    "if importlib.util.find_spec('torchvision'):\n"
    "    subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '-q', '-y', 'torchvision'], check=True)\n"
    "spec = importlib.util.find_spec('torchaudio')\n"
    "if spec:\n"
    "    for so in (pathlib.Path(spec.origin).parent / 'lib').glob('*.so'):\n"
    "        print('removed', so); so.unlink()\n"
)
FIXUPS: dict[str, str] = {"llamafactory": _CPU_ONLY_AUDIO_VISION}
STEPS = 2
MAX_LENGTH = 1024
#: role markers as plain text, the end of each message as the EOS token; a prompt rendered with the
#: generation prompt is a prefix of the prompt rendered with its answer (what DPO tokenisation needs)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "WANDB_MODE": "disabled",
               "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


class CheckError(Exception):
    """A step of the check failed: one line saying which and why."""


# ---------------------------------------------------------------------------------------------------
# What the export holds (read without the trainers: pyarrow and json only)
# ---------------------------------------------------------------------------------------------------

def parquet_rows(folder: Path, split: str = "train") -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.glob(f"{split}-*.parquet")))


def dataset_info(out: Path) -> dict:
    path = out / "dataset_info.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def llamafactory_entries(out: Path) -> tuple[str | None, str | None]:
    """The train entries of ``dataset_info.json``: (the SFT entry, the ranking entry); None when absent.
    A train entry is one whose name has no ``_validation`` / ``_test`` suffix."""
    sft = pref = None
    for name, entry in dataset_info(out).items():
        if name.endswith(("_validation", "_test")) or not isinstance(entry, dict):
            continue
        if entry.get("ranking"):
            pref = pref or name
        elif "kto_tag" not in (entry.get("columns") or {}):
            sft = sft or name
    return sft, pref


def json_rows(path: Path) -> int:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise CheckError(f"{path} is not a JSON array")
    return len(data)


def dpo_folder(out: Path) -> Path | None:
    """``OUT/dpo`` when it holds a train split (the preference export), else None."""
    dpo = out / "dpo"
    if not dpo.is_dir():
        return None
    return dpo if preference_rows(out) else None


def preference_rows(out: Path) -> int:
    dpo = out / "dpo"
    for folder in (dpo / "parquet", dpo):
        n = parquet_rows(folder) if folder.is_dir() else 0
        if n:
            return n
    return 0


def hf_dir(folder: Path) -> Path:
    """The ``save_to_disk`` DatasetDict in (or at) ``folder``."""
    for cand in (folder / "hf", folder):
        if (cand / "dataset_dict.json").exists():
            return cand
    raise CheckError(f"no Hugging Face DatasetDict (dataset_dict.json) in {folder} or {folder / 'hf'}")


def exported_text(out: Path) -> list[str]:
    """Every message text of the export (SFT rows and preference rows): what the tokenizer learns."""
    import pyarrow.parquet as pq

    texts: list[str] = []
    files = sorted((out / "parquet").glob("*.parquet"))
    dpo = out / "dpo"
    if dpo.is_dir():
        files += sorted(dpo.rglob("*.parquet"))
    for f in files:
        table = pq.read_table(f)
        for col in ("messages", "prompt", "chosen", "rejected"):
            if col not in table.column_names:
                continue
            for value in table.column(col).to_pylist():
                if isinstance(value, list):
                    texts += [m.get("content") or "" for m in value if isinstance(m, dict)]
                elif isinstance(value, str):
                    texts.append(value)
    return [t for t in texts if t]


# ---------------------------------------------------------------------------------------------------
# Building the export through the real CLI
# ---------------------------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> str:
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", OPENAI_API_KEY="sk-check-trainers")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "itcollect", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        raise CheckError(f"itcollect {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout


class LoopbackServer:
    """``python -m tests.fakeserver`` in its own process on a free loopback port; stops when closed."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeserver", "--host", "127.0.0.1", "--port", "0",
             "--responder", "tests.responders:systems_responder"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.close()
            raise CheckError(f"the loopback server did not start: {self.proc.stderr.read()[-800:] if self.proc.stderr else ''}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # it serves until its stdin closes
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the two systems every simulated turn compares: the responder marks the second one's answers, and its
#: judge finds an error per mark, so the first wins every judged turn
CHOSEN_SYSTEM, REJECTED_SYSTEM = "fake-model", "fake-model-2"


def simulate_compared(ws: Path, base_url: str, cwd: Path) -> int:
    """``simulate --compare`` of the two systems on the loopback server (the judge there too), then
    the compared turns ``stats`` counts."""
    _cli("-C", str(ws), "simulate", "--compare", f"{CHOSEN_SYSTEM},{REJECTED_SYSTEM}", "--base-url", base_url,
         "--model", CHOSEN_SYSTEM, "--judge-base-url", base_url, "--judge-model", "fake-judge", "--concurrency", "8",
         cwd=cwd)
    return int(json.loads(_cli("-C", str(ws), "stats", "--compare", "--json", cwd=cwd))["turns"])


def build_export(work: Path, dialogues: int, seed: int) -> tuple[Path, str]:
    """A workspace in ``work/ws`` and its export in ``work/out``; returns (OUT, what it holds, in a line)."""
    sys.path.insert(0, str(REPO))
    from tests.responders import CORPUS

    ws, out = work / "ws", work / "out"
    _cli("init", str(ws), cwd=work)
    _cli("-C", str(ws), "ingest", str(REPO / "data" / "samples"), cwd=work)
    # the responder answers sentences of its own corpus only (the others fail simulate's language check)
    for src, ref in (("en", "zh"), ("zh", "en"), ("de", "fr"), ("fr", "de")):
        corpus = work / f"news.{src}-{ref}.tsv"
        corpus.write_text("".join(f"{e[src]}\t{e[ref]}\n" for e in CORPUS), encoding="utf-8")
        _cli("-C", str(ws), "ingest", str(corpus), "--lang", src, "--ref-lang", ref, cwd=work)
    _cli("-C", str(ws), "plan", "--dialogues", str(dialogues), "--seed", str(seed), cwd=work)
    with LoopbackServer() as server:
        compared = simulate_compared(ws, server.base_url, work)
    _cli("-C", str(ws), "import", str(REPO / "itcollect" / "demo_dialogues.jsonl"), cwd=work)
    _cli("-C", str(ws), "filter", cwd=work)
    summary = _cli("-C", str(ws), "export", "--hf", str(out), "--format", "all", cwd=work).strip().splitlines()
    return out, f"{compared} turns compared by simulate --compare; " + (summary[-1] if summary else "")


# ---------------------------------------------------------------------------------------------------
# The trainers' virtualenvs
# ---------------------------------------------------------------------------------------------------

def venv_dir(cache: Path, trainer: str) -> Path:
    pins = "\n".join([f"python {sys.version_info.major}.{sys.version_info.minor}", TORCH, *TRAINERS[trainer],
                      *([FIXUPS[trainer]] if trainer in FIXUPS else [])])
    return cache / f"{trainer}-{hashlib.sha256(pins.encode()).hexdigest()[:10]}"


def ensure_venv(cache: Path, trainer: str, log: Path) -> tuple[Path, float]:
    """The trainer's virtualenv (made when missing); returns (its python, seconds spent installing)."""
    venv = venv_dir(cache, trainer)
    python = venv / "bin" / "python"
    if (venv / ".complete").exists() and python.exists():
        return python, 0.0
    if venv.exists():
        shutil.rmtree(venv)  # a half-made one from an interrupted run
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    constraints = venv.with_name(venv.name + ".constraints.txt")
    constraints.write_text(TORCH + "\n", encoding="utf-8")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", TORCH],
             [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *TRAINERS[trainer]]]
    if trainer in FIXUPS:
        steps.append([str(python), "-c", FIXUPS[trainer]])
    with log.open("a", encoding="utf-8") as fh:
        for cmd in steps:
            fh.write(f"+ {' '.join(cmd)}\n")
            fh.flush()
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise CheckError(f"installing {trainer} failed ({' '.join(cmd[2:])} exited {rc}); see {log}")
    (venv / ".complete").write_text("\n".join([TORCH, *TRAINERS[trainer]]) + "\n", encoding="utf-8")
    return python, time.monotonic() - t0


def run_inner(python: Path, args: list[str], log: Path, env: dict[str, str], timeout: float = 1800) -> dict:
    """This file's ``_inner`` half in a trainer's virtualenv; returns the JSON it wrote."""
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "_inner", *args, "--result", str(result)]
    with log.open("w", encoding="utf-8") as fh:
        fh.write(f"+ {' '.join(cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise CheckError(f"{' '.join(args[:1])} timed out after {timeout:.0f} s; see {log}") from None
    if rc != 0 or not result.exists():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
        raise CheckError(f"{args[0]} exited {rc}; see {log}:\n    " + "\n    ".join(tail))
    return json.loads(result.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------
# Inside a trainer's virtualenv (nothing from itcollect)
# ---------------------------------------------------------------------------------------------------

def inner_build_model(texts_file: str, model_dir: str) -> dict:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    tok.train_from_iterator(texts + [CHAT_TEMPLATE], trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=MAX_LENGTH)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_LENGTH,
                         pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir)
    return {"vocab": len(fast), "parameters": sum(p.numel() for p in model.parameters()), "texts": len(texts)}


def inner_trl(stage: str, data: str, model_dir: str, work: str) -> dict:
    """``stage`` sft: ``SFTTrainer``; dpo: ``DPOTrainer`` (no reference model given: TRL copies the
    policy), on the train split of the DatasetDict in ``data``, as it was exported."""
    import trl
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config_cls, trainer_cls = ((trl.SFTConfig, trl.SFTTrainer) if stage == "sft" else (trl.DPOConfig, trl.DPOTrainer))
    args = config_cls(output_dir=work, max_steps=STEPS, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                      learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                      bf16=False, fp16=False, max_length=MAX_LENGTH, seed=0, dataloader_num_workers=0)
    trainer = trainer_cls(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                          train_dataset=load_from_disk(data)["train"],
                          processing_class=AutoTokenizer.from_pretrained(model_dir))
    loaded = len(trainer.train_dataset)  # what the trainer kept after its own preparation
    out = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"loaded": loaded, "steps": trainer.state.global_step, "train_loss": out.training_loss,
            "losses": losses}


_NUM_EXAMPLES = re.compile(r"Num examples = ([\d,]+)")


def parse_llamafactory_log(text: str) -> dict:
    """Rows loaded (the HF trainer's ``Num examples``), rows LLaMA-Factory dropped as invalid."""
    loaded = [int(m.replace(",", "")) for m in _NUM_EXAMPLES.findall(text)]
    return {"loaded": loaded[0] if loaded else None,
            "dropped_invalid": text.count("Dropped invalid example") + text.count("Skipping this abnormal example")}


def inner_llamafactory(stage: str, dataset_dir: str, dataset: str, model_dir: str, work: str) -> dict:
    cfg = {"model_name_or_path": model_dir, "stage": stage, "do_train": True, "finetuning_type": "full",
           "dataset_dir": dataset_dir, "dataset": dataset, "template": "default", "cutoff_len": MAX_LENGTH,
           "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": str(Path(work) / "output"),
           "overwrite_output_dir": True, "logging_steps": 1, "max_steps": STEPS, "per_device_train_batch_size": 2,
           "gradient_accumulation_steps": 1, "learning_rate": 1.0e-4, "report_to": "none", "save_strategy": "no",
           "bf16": False, "fp16": False, "seed": 0, "plot_loss": False, "dataloader_num_workers": 0}
    if stage == "dpo":
        cfg.update({"pref_beta": 0.1, "pref_loss": "sigmoid"})
    import yaml  # a dependency of LLaMA-Factory (whose JSON config reading is broken in 0.9.5)

    config = Path(work) / f"llamafactory_{stage}.yaml"
    Path(work).mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    cli = Path(sys.executable).with_name("llamafactory-cli")
    proc = subprocess.run([str(cli), "train", str(config)], capture_output=True, text=True, cwd=work,
                          env=dict(os.environ, DISABLE_VERSION_CHECK="0"))
    log = proc.stdout + proc.stderr
    (Path(work) / f"llamafactory_{stage}.log").write_text(log, encoding="utf-8")
    sys.stdout.write(log[-20000:])
    if proc.returncode != 0:
        raise SystemExit(f"llamafactory-cli train exited {proc.returncode}")
    state_file = Path(work) / "output" / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
    losses = [h["loss"] for h in state.get("log_history", []) if "loss" in h]
    results = Path(work) / "output" / "train_results.json"
    train_loss = json.loads(results.read_text(encoding="utf-8")).get("train_loss") if results.exists() else None
    return {**parse_llamafactory_log(log), "steps": state.get("global_step"), "train_loss": train_loss,
            "losses": losses}


def inner_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="check_trainers.py _inner")
    ap.add_argument("what", choices=["build-model", "trl-sft", "trl-dpo", "llamafactory-sft", "llamafactory-dpo"])
    ap.add_argument("--texts")
    ap.add_argument("--data", help="a DatasetDict folder (TRL) or the dataset_dir (LLaMA-Factory)")
    ap.add_argument("--dataset", help="the dataset_info.json entry (LLaMA-Factory)")
    ap.add_argument("--model")
    ap.add_argument("--work")
    ap.add_argument("--result", required=True)
    a = ap.parse_args(argv)
    if a.what == "build-model":
        res = inner_build_model(a.texts, a.model)
    elif a.what.startswith("trl-"):
        res = inner_trl(a.what.split("-")[1], a.data, a.model, a.work)
    else:
        res = inner_llamafactory(a.what.split("-")[1], a.data, a.dataset, a.model, a.work)
    Path(a.result).write_text(json.dumps(res), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------------

def judge_stage(res: dict, exported: int) -> str | None:
    """Why a trained stage fails the check, or None when it passes."""
    if res.get("loaded") != exported:
        return f"loaded {res.get('loaded')} rows of {exported} exported"
    if res.get("dropped_invalid"):
        return f"dropped {res['dropped_invalid']} rows as invalid"
    if res.get("steps") != STEPS:
        return f"ran {res.get('steps')} optimizer steps, not {STEPS}"
    losses = res.get("losses") or []
    if not losses or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
        return f"no finite training loss ({losses})"
    return None


def stage_plan(out: Path, trainer: str) -> list[tuple[str, int, list[str] | None, str]]:
    """(stage, rows exported, inner arguments or None when skipped, what it reads / why skipped)."""
    plan: list[tuple[str, int, list[str] | None, str]] = []
    if trainer == "trl":
        plan.append(("sft", parquet_rows(out / "parquet"), ["trl-sft", "--data", str(hf_dir(out))], "OUT/hf train"))
        dpo = dpo_folder(out)
        if dpo is None:
            plan.append(("dpo", 0, None, "skipped: the export has no preference rows (no train split in OUT/dpo/)"))
        else:
            plan.append(("dpo", preference_rows(out), ["trl-dpo", "--data", str(hf_dir(dpo))],
                         f"OUT/{hf_dir(dpo).relative_to(out)} train"))
    else:
        info = dataset_info(out)
        sft, pref = llamafactory_entries(out)
        if sft is None:
            raise CheckError(f"{out / 'dataset_info.json'} has no SFT entry")
        plan.append(("sft", json_rows(out / info[sft]["file_name"]),
                     ["llamafactory-sft", "--data", str(out), "--dataset", sft], f"dataset_info.json {sft!r}"))
        if pref is None:
            plan.append(("dpo", 0, None, "skipped: the export has no preference rows (no ranking entry in "
                                         "dataset_info.json)"))
        else:
            plan.append(("dpo", json_rows(out / info[pref]["file_name"]),
                         ["llamafactory-dpo", "--data", str(out), "--dataset", pref],
                         f"dataset_info.json {pref!r} (ranking)"))
    return plan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_inner"]:
        return inner_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "itcollect-trainers",
                    help="where the trainers' virtualenvs are made and kept (default: %(default)s)")
    ap.add_argument("--trainers", default="trl,llamafactory", help="comma-separated: trl, llamafactory")
    ap.add_argument("--work", type=Path, help="keep the workspace, export, models and logs here (default: a "
                                              "temporary folder, removed unless the check fails)")
    ap.add_argument("--dialogues", type=int, default=40, help="specs to plan and simulate (default: 40)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--require-dpo", action="store_true", help="fail when the export has no preference rows")
    a = ap.parse_args(argv)
    trainers = [t.strip() for t in a.trainers.split(",") if t.strip()]
    unknown = [t for t in trainers if t not in TRAINERS]
    if unknown or not trainers:
        ap.error(f"unknown trainers {unknown}; known: {', '.join(TRAINERS)}")

    if a.work is not None and a.work.exists() and any(a.work.iterdir()):
        ap.error(f"--work {a.work}: not empty (the check builds its workspace there from scratch)")
    work = (a.work or Path(tempfile.mkdtemp(prefix="itcollect-trainers-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    t_start = time.monotonic()
    try:
        t0 = time.monotonic()
        out, summary = build_export(work, a.dialogues, a.seed)
        print(f"export: {summary} ({time.monotonic() - t0:.0f} s)", flush=True)
        texts = work / "texts.json"
        texts.write_text(json.dumps(exported_text(out), ensure_ascii=False), encoding="utf-8")
        env = dict(os.environ, **HUB_OFFLINE, HF_HOME=str(work / "hf-home"))
        for trainer in trainers:
            python, took = ensure_venv(a.cache.resolve(), trainer, work / f"{trainer}-install.log")
            pins = ", ".join([TORCH, *TRAINERS[trainer]])
            print(f"{trainer}: virtualenv {python.parent.parent} ({pins}; "
                  f"{f'installed in {took:.0f} s' if took else 'reused'})", flush=True)
            model = work / "models" / trainer
            info = run_inner(python, ["build-model", "--texts", str(texts), "--model", str(model)],
                             work / f"{trainer}-model.log", env)
            print(f"{trainer}: tiny Llama of {info['parameters']:,} parameters, BPE tokenizer of {info['vocab']} "
                  f"tokens trained on {info['texts']} exported texts", flush=True)
            for stage, exported, inner, what in stage_plan(out, trainer):
                label = f"{trainer} {stage}"
                if inner is None:
                    print(f"{label:<18} {what}", flush=True)
                    if a.require_dpo:
                        failures.append(f"{label}: {what}")
                    continue
                t0 = time.monotonic()
                try:
                    res = run_inner(python, [*inner, "--model", str(model), "--work", str(work / f"{trainer}-{stage}")],
                                    work / f"{trainer}-{stage}.log", env)
                except CheckError as exc:
                    print(f"{label:<18} FAILED: {exc}", flush=True)
                    failures.append(f"{label}: {exc}")
                    continue
                why = judge_stage(res, exported)
                loss = res.get("train_loss")
                print(f"{label:<18} exported {exported:>4}  loaded {res.get('loaded')!s:>4}  steps {res.get('steps')}  "
                      f"loss {loss if loss is None else f'{loss:.3f}'}  ({what}; {time.monotonic() - t0:.0f} s)"
                      + (f"  MISMATCH: {why}" if why else "  ok"), flush=True)
                if why:
                    failures.append(f"{label}: {why}")
    except CheckError as exc:
        failures.append(str(exc))
        print(f"error: {exc}", file=sys.stderr)
    print(f"total {time.monotonic() - t_start:.0f} s", flush=True)
    if failures:
        print(f"FAILED ({len(failures)}): " + "; ".join(failures), file=sys.stderr)
        print(f"logs and files kept in {work}", file=sys.stderr)
        return 1
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print("all trainers took the export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
