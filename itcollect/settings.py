"""Typed views of the validated config: one frozen dataclass per ``itcollect.toml`` section.

The defaults live in one place only, the commented default config (:data:`itcollect.config.
DEFAULT_CONFIG_TEXT`): these classes declare names and types, never values, and are built from a
config that was merged with the defaults and validated, so no stage repeats a default or writes
``.get(key, default)``. tests/test_config.py checks that every section here has exactly the keys
of the default config, with matching types.

Use: ``settings(config).filter.min_chrf``. A plain mapping (a test's partial dict) is validated
against the defaults first, as ``itcollect.toml`` would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class WorkspaceSection:
    languages: tuple[str, ...]


@dataclass(frozen=True)
class IngestSection:
    langid_backend: str
    min_chars_zh: int
    max_chars_zh: int
    min_words: int
    max_words: int
    min_letter_ratio: float
    moses_normalize: bool
    langid_fast_path: bool


@dataclass(frozen=True)
class RoleSection:
    """``[llm.assistant]`` / ``[llm.annotator]`` / ``[llm.judge]`` (judge: also response_format)."""

    base_url: str
    model: str
    temperature: float
    top_p: float
    max_tokens: int
    response_format: str = ""  # only [llm.judge] has it (its default is in the default config)


@dataclass(frozen=True)
class LLMSection:
    api_key_env: str
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    circuit_breaker_failures: int
    concurrency: int
    requests_per_minute: int
    tokens_per_minute: int
    start_pace_per_s: float
    assistant: RoleSection
    annotator: RoleSection
    judge: RoleSection


@dataclass(frozen=True)
class LocalSection:
    model_path: str
    n_ctx: int
    n_threads: int
    port: int
    startup_timeout_s: float


@dataclass(frozen=True)
class PromptsSection:
    dir: str


@dataclass(frozen=True)
class MixSection:
    pairs: Mapping[str, float]
    instruction_langs: Mapping[str, float]
    turns: Mapping[str, float]
    interaction_types: Mapping[str, float]
    must_include_share: float
    max_uses_per_source: int


@dataclass(frozen=True)
class SimulateSection:
    max_turn_retries: int
    max_cost_usd: float
    lease_s: float
    first_turn: str  # "template" | "llm" | "mixed"
    first_turn_llm_share: float


@dataclass(frozen=True)
class JudgeSection:
    minor: float
    major: float
    critical: float
    non_translation: float
    floor: float
    pass_score: float
    max_cost_usd: float


@dataclass(frozen=True)
class BatchSection:
    poll_interval_s: float
    poll_backoff: float
    poll_max_s: float
    max_requests_per_file: int
    max_bytes_per_file: int
    completion_window: str
    max_attempts: int
    wait: bool


@dataclass(frozen=True)
class SessionSection:
    lease_minutes: int
    show_reference: bool
    overlap_share: float
    overlap_annotators: int
    control_share: float
    min_seconds_per_word: float


@dataclass(frozen=True)
class WebSection:
    host: str
    port: int
    public_url: str
    max_body_bytes: int
    session_hours: float
    secure_cookie: str
    trusted_proxies: str


@dataclass(frozen=True)
class FilterSection:
    min_length_ratio: float
    max_length_ratio: float
    zh_char_weight: float
    min_user_turns: int
    repeat_ngram_n: int
    repeat_ngram_max: int
    min_chrf: float
    near_dup_threshold: float
    minhash_num_perm: int
    near_dup: bool
    min_judge_score: float
    min_judge_rating: int
    max_critical_errors: int
    require_compliance: bool
    require_judge: bool
    drop_review_rejected: bool


@dataclass(frozen=True)
class ExportSection:
    license: str
    validation_share: float
    test_share: float
    split_seed: int
    shard_size: int


@dataclass(frozen=True)
class Settings:
    """Every section of a validated config."""

    workspace: WorkspaceSection
    ingest: IngestSection
    llm: LLMSection
    local: LocalSection
    prices: Mapping[str, tuple[float, ...]]
    prompts: PromptsSection
    mix: MixSection
    simulate: SimulateSection
    judge: JudgeSection
    batch: BatchSection
    session: SessionSection
    web: WebSection
    filter: FilterSection
    export: ExportSection


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            continue  # only a field with a class default (RoleSection.response_format) may be absent
        v = values[f.name]
        if isinstance(v, Mapping) and isinstance(f.type, str) and f.type.endswith("Section"):
            v = _build(_SECTIONS[f.type], v)
        elif isinstance(v, list):
            v = tuple(v)
        elif f.type == "float" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        kwargs[f.name] = v
    return cls(**kwargs)


_SECTIONS = {c.__name__: c for c in (WorkspaceSection, IngestSection, RoleSection, LLMSection, LocalSection,
                                     PromptsSection, MixSection, SimulateSection, JudgeSection, BatchSection,
                                     SessionSection, WebSection, FilterSection, ExportSection)}


def settings(config: Mapping[str, Any]) -> Settings:
    """The typed sections of ``config`` (a validated :class:`itcollect.config.Config`, or any
    mapping of sections, which is merged with the defaults and validated first)."""
    from itcollect.config import Config, validated

    cfg = config if isinstance(config, Config) else validated(config)
    prices = {k: tuple(float(x) for x in v) for k, v in cfg["prices"].items()}
    return _build(Settings, {**cfg, "prices": prices})


__all__ = ["Settings", "settings", *_SECTIONS]
