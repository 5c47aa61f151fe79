"""LLM roles as data: which endpoint, model, key and sampling each role of a run uses.

A role is a name (``assistant``, ``annotator``, ``judge``, or ``system:NAME`` for each
``[llm.systems.NAME]`` table of a comparison) and an :class:`Endpoint`. :func:`resolve_endpoints`
is the one place where the config's role tables and a command's flags meet; the client then serves
whatever roles it is given (``LLMClient(config, store, command=..., endpoints=...)``), so a new
role or a tenth assistant system is one more entry, not one more keyword argument.

Precedence, per role, first non-empty wins:

* the base URL: the role's own flag (``--annotator-base-url``; judge's ``--base-url``), then the
  command's ``--base-url`` for the roles it sets (assistant and annotator), then the role's table,
  then ``[llm.assistant]`` (an empty ``base_url`` inherits the assistant's); none: the openai SDK's
  own default (``OPENAI_BASE_URL`` or api.openai.com);
* the model: the same chain with ``--annotator-model`` / ``--model``; none is an error naming the
  flag and the key to set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itcollect.config.schema import RoleSection, Settings
from itcollect.kernel.errors import ServiceError, UsageError

ROLES = ("assistant", "annotator", "judge")
#: The roles a client sets up unless told otherwise (simulate and session); ``judge`` builds only
#: the judge role, so its flags and config never touch the other two.
DEFAULT_ROLES = ("assistant", "annotator")
#: The roles a command's ``--base-url`` / ``--model`` set (unless their own flags say otherwise).
COMMAND_FLAG_ROLES = ("assistant", "annotator")
#: The role name of the assistant system ``[llm.systems.NAME]``.
SYSTEM_ROLE_PREFIX = "system:"


def system_role(name: str) -> str:
    """The role name of the assistant system ``[llm.systems.NAME]``."""
    return f"{SYSTEM_ROLE_PREFIX}{name}"


@dataclass(frozen=True)
class EndpointFlags:
    """A command's flags for one role (None: not given)."""

    base_url: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One role's resolved settings: where its calls go and how they are sampled."""

    role: str
    base_url: str | None  # None: the SDK's default (OPENAI_BASE_URL or api.openai.com)
    model: str
    api_key_env: str  # the environment variable holding the key ("" = the SDK's OPENAI_API_KEY)
    temperature: float
    top_p: float
    max_tokens: int
    response_format: str = ""  # how a judgement is asked for as JSON ([llm.judge] only)

    @property
    def sampling(self) -> dict[str, Any]:
        """The request parameters every call of the role carries unless the call overrides them."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


def role_tables(s: Settings) -> dict[str, tuple[RoleSection, str]]:
    """Every role the config declares: its table and the table's name for messages."""
    llm = s.llm
    tables: dict[str, tuple[RoleSection, str]] = {
        "assistant": (llm.assistant, "[llm.assistant]"), "annotator": (llm.annotator, "[llm.annotator]"),
        "judge": (llm.judge, "[llm.judge]")}
    for name, system in llm.systems.items():
        tables[system_role(name)] = (system, f"[llm.systems.{name}]")
    return tables


def _first(*values: str | None) -> str:
    for v in values:
        if v and v.strip():
            return v.strip()
    return ""


def resolve_endpoints(s: Settings, roles: Sequence[str] = DEFAULT_ROLES, *, base_url: str | None = None,
                      model: str | None = None, flags: Mapping[str, EndpointFlags] | None = None) -> dict[str, Endpoint]:
    """The endpoint of each of ``roles`` from the typed config ``s``, the command's ``--base-url`` /
    ``--model`` (``base_url``, ``model``: they set the assistant and the annotator) and each role's
    own flags (``flags``), in the precedence of the module docstring."""
    tables = role_tables(s)
    unknown = [r for r in roles if r not in tables]
    if unknown or not roles:
        raise ValueError(f"unknown LLM roles {unknown} (expected some of {', '.join(tables)})")
    flags = flags or {}
    assistant = s.llm.assistant
    out: dict[str, Endpoint] = {}
    for role in roles:
        table, where = tables[role]
        own = flags.get(role, EndpointFlags())
        command = EndpointFlags(base_url, model) if role in COMMAND_FLAG_ROLES else EndpointFlags()
        url = _first(own.base_url, command.base_url, table.base_url, assistant.base_url)
        name = _first(own.model, command.model, table.model, assistant.model)
        if not name:
            raise ServiceError(f"no model for the {role} role: pass --model NAME or set {where} model "
                               f"(or [llm.assistant] model, which it inherits)")
        key_env = str(getattr(table, "api_key_env", "")).strip() or s.llm.api_key_env
        out[role] = Endpoint(role, url or None, name, key_env, table.temperature, table.top_p,
                             table.max_tokens, str(getattr(table, "response_format", "")))
    return out


def system_name(role: str) -> str:
    """The system NAME of the role ``system:NAME``."""
    if not role.startswith(SYSTEM_ROLE_PREFIX):
        raise ValueError(f"{role!r} is not a system role")
    return role[len(SYSTEM_ROLE_PREFIX):]


def parse_system_names(text: str) -> list[str]:
    """``"A,B, C"`` -> ``["A", "B", "C"]`` (empty pieces dropped)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def resolve_systems(s: Settings, names: Sequence[str], *, base_url: str | None = None) -> list[Endpoint]:
    """The endpoints of the systems a comparison names, in the order given (role ``system:NAME``).

    A name with a ``[llm.systems.NAME]`` table takes that table as :func:`resolve_endpoints` does
    (an empty ``base_url`` / ``model`` inherits ``[llm.assistant]``'s; the command's flags do not
    touch it); any other name is a model on the assistant's endpoint as the command sets it
    (``--base-url``, else ``[llm.assistant] base_url``), used as given, not looked up in the
    endpoint's model list, with the assistant's sampling and key. Fewer than two names or a name twice is
    a :class:`~itcollect.kernel.errors.UsageError` naming the configured systems."""
    names = [n.strip() for n in names if n and n.strip()]
    configured = ", ".join(s.llm.systems) or "none"
    if len(names) < 2:
        raise UsageError(f"--compare needs two or more systems, got {len(names)} ({', '.join(names) or 'none'}); "
                         f"configured systems ([llm.systems.NAME]): {configured}; any other name is a model "
                         f"on the assistant's endpoint")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--compare names {', '.join(twice)} more than once; configured systems "
                         f"([llm.systems.NAME]): {configured}")
    tables = resolve_endpoints(s, [system_role(n) for n in names if n in s.llm.systems] or ["assistant"])
    out: list[Endpoint] = []
    for name in names:
        if name in s.llm.systems:
            out.append(tables[system_role(name)])
            continue
        a = s.llm.assistant
        out.append(Endpoint(system_role(name), _first(base_url, a.base_url) or None, name, s.llm.api_key_env,
                            a.temperature, a.top_p, a.max_tokens))
    return out


__all__ = ["COMMAND_FLAG_ROLES", "DEFAULT_ROLES", "ROLES", "Endpoint", "EndpointFlags", "parse_system_names",
           "resolve_endpoints", "resolve_systems", "role_tables", "system_name", "system_role"]
