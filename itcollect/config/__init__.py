"""Workspace configuration: ``itcollect.toml``.

Every setting is declared once, in :mod:`itcollect.config.schema` (type, default, range or
choices, comment). From that declaration come the commented default file
(:data:`DEFAULT_CONFIG_TEXT`, what ``init`` writes) and ``docs/config.md``
(:mod:`itcollect.config.render`), the validation here (one :class:`ConfigError` naming the key
and the file), and the typed frozen sections (:func:`settings`).

A validated config is a :class:`Config`: a plain nested dict of every section with the defaults
filled in (so it pickles into worker processes and serialises), plus the file it came from. Stages
read it through :func:`settings` (``settings(config).filter.min_chrf``), never by key.
"""

from __future__ import annotations

import copy
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from itcollect.config.render import bounds, default_config_text, extra, number, section_type
from itcollect.config.schema import FIRST_TURN_SOURCES, JUDGE_RESPONSE_FORMATS, SettingError, Settings
from itcollect.kernel.errors import ConfigError

CONFIG_FILE = "itcollect.toml"

#: The commented default config ``itcollect init`` writes, generated from the declaration.
DEFAULT_CONFIG_TEXT = default_config_text()


class Config(dict):
    """The validated config: a plain nested dict (so it serialises) plus its origin."""

    path: Path | None = None

    @property
    def settings(self) -> Settings:
        """The typed sections, built from the current values."""
        return settings(self)


def default_config() -> dict[str, Any]:
    """Every section with its default values, as a nested dict."""
    return Settings().model_dump(mode="json")


def _typed(values: Mapping[str, Any], path: Path | str | None) -> Settings:
    try:
        return Settings.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0]), path=str(path) if path is not None else None) from None


def _config(values: Mapping[str, Any], path: Path | str, origin: Path | None) -> Config:
    cfg = Config(_typed(values, path).model_dump(mode="json"))
    cfg.path = origin
    return cfg


def parse_config(text: str, path: Path | str = CONFIG_FILE) -> Config:
    """The config in ``text`` (the content of ``path``), validated and completed with the defaults."""
    path = Path(path)
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    return _config(user, path, path)


def validated(config: Any, path: Path | str = CONFIG_FILE) -> Config:
    """A mapping of sections (e.g. a test's partial dict) merged with the defaults and validated,
    as the same values in ``itcollect.toml`` would be."""
    if isinstance(config, Config):
        return config
    return _config(dict(config or {}), path, None)


def with_values(config: Mapping[str, Any] | None, section: str, **values: Any) -> Config:
    """A validated copy of ``config`` (the defaults without one) with ``values`` set in the table
    ``section`` (dotted: ``"local"``, ``"llm.assistant"``): a command's options over the file."""
    data = copy.deepcopy(dict(config or {}))
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node.update(values)
    origin = getattr(config, "path", None)
    return _config(data, origin or CONFIG_FILE, origin)


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8", path=str(path)) from None
    return parse_config(text, path)


def settings(config: Mapping[str, Any] | None) -> Settings:
    """The typed sections of ``config``: a :class:`Config`, or any mapping of sections (a test's
    partial dict), which is merged with the defaults and validated as ``itcollect.toml`` would be."""
    return _typed(config or {}, getattr(config, "path", None) or CONFIG_FILE)


# --- one error per bad value, naming the key ---------------------------------------------------

_TYPE_NAMES = {"int_type": "an integer", "float_type": "int or float", "string_type": "a string",
               "bool_type": "true/false", "tuple_type": "a list", "list_type": "a list",
               "dict_type": "a table", "model_type": "a table", "literal_error": "a string"}
_RANGE_ERRORS = ("greater_than_equal", "greater_than", "less_than_equal", "less_than", "literal_error")


def _walk(loc: tuple[Any, ...]) -> tuple[FieldInfo | None, bool]:
    """The declared field at ``loc`` (None below a field), and whether ``loc`` is an entry of a
    table of the user's keys (``mix.pairs.x``, ``prices.m``) rather than a declared key."""
    model: type[BaseModel] | None = Settings
    field, annotation, user_key = None, None, False
    for part in loc:
        if model is not None and isinstance(part, str):
            field = model.model_fields.get(part)
            if field is None:
                return None, False
            annotation, user_key = field.annotation, False
            model = section_type(annotation)
        elif typing.get_origin(annotation) is dict:
            annotation, user_key = typing.get_args(annotation)[1], True
            model = section_type(annotation)
        else:
            return field, user_key
    return field, user_key


def _range_message(dotted: str, field: FieldInfo, err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        choices = typing.get_args(field.annotation)
        return f"{dotted} must be one of {', '.join(map(repr, choices))}, got {err['input']!r}"
    b = bounds(field)
    if "ge" in b and "le" in b:
        return f"{dotted} must be between {number(b['ge'])} and {number(b['le'])}"
    if "gt" in ctx:
        return f"{dotted} must be more than {number(ctx['gt'])}"
    if "ge" in ctx:
        return f"{dotted} must be 0 or more" if ctx["ge"] == 0 else f"{dotted} must be at least {number(ctx['ge'])}"
    if "le" in ctx:
        return f"{dotted} must be 0 or less" if ctx["le"] == 0 else f"{dotted} must be at most {number(ctx['le'])}"
    return f"{dotted}: {err['msg']}"


def _message(err: Mapping[str, Any]) -> str:
    """One pydantic error as the line the user reads: the dotted key and what it must be."""
    loc, kind = tuple(err["loc"]), err["type"]
    if kind == "value_error" and isinstance((err.get("ctx") or {}).get("error"), SettingError):
        return str(err["ctx"]["error"])  # a rule of the declaration, whose message names its keys
    item = None
    if loc and isinstance(loc[-1], int):  # an item of a list: the list is what is wrong
        loc, item = loc[:-1], err["input"]
    dotted = ".".join(str(p) for p in loc)
    if kind == "extra_forbidden":
        return f"unknown key '{dotted}'"
    field, user_key = _walk(loc)
    if field is None:
        return f"'{dotted}': {err['msg']}"
    if kind in _RANGE_ERRORS:
        return str(extra(field).get("error") or _range_message(dotted, field, err))
    if kind in ("dict_type", "model_type"):
        open_table = typing.get_origin(field.annotation) is dict and not user_key
        return f"[{dotted}] must be a table" if open_table else f"'{dotted}' must be a table"
    what = _TYPE_NAMES.get(kind)
    if what is None:
        return f"'{dotted}': {err['msg']}"
    quoted = dotted if user_key else f"'{dotted}'"
    if item is not None:
        return f"{quoted} must be a list of {'numbers' if kind == 'float_type' else 'strings'}, got {item!r} in it"
    return f"{quoted} must be {what}, got {err['input']!r}"


__all__ = ["CONFIG_FILE", "DEFAULT_CONFIG_TEXT", "FIRST_TURN_SOURCES", "JUDGE_RESPONSE_FORMATS", "Config",
           "ConfigError", "Settings", "default_config", "load_config", "parse_config", "settings", "validated",
           "with_values"]
