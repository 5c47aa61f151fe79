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
from itcollect.kernel.errors import ServiceError

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
        out[role] = Endpoint(role, url or None, name, s.llm.api_key_env, table.temperature, table.top_p,
                             table.max_tokens, str(getattr(table, "response_format", "")))
    return out


__all__ = ["COMMAND_FLAG_ROLES", "DEFAULT_ROLES", "ROLES", "Endpoint", "EndpointFlags", "resolve_endpoints",
           "role_tables", "system_role"]
