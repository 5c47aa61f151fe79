"""What the declaration (:mod:`itcollect.config.schema`) renders to: the commented default file
``itcollect init`` writes, and the Markdown reference ``docs/config.md``.

Both walk the same models in declaration order, so neither can drift from what the validator
accepts. ``python -m itcollect.config --markdown > docs/config.md`` regenerates the reference
(a test fails while the committed page differs).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from itcollect.config.schema import FILE_COMMENT, Section, Settings

_BARE_KEY = re.compile(r"[A-Za-z0-9_]+")


def section_comment(cls: type[BaseModel]) -> str:
    """The comment under a table's header: the section class's own docstring ("" without one)."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""


def extra(field: FieldInfo) -> dict[str, Any]:
    """The declaration's own metadata of a field (``error``, ``toml``, ``doc``, ``allowed``)."""
    e = field.json_schema_extra
    return e if isinstance(e, dict) else {}


def section_type(annotation: Any) -> type[Section] | None:
    """The section class a field holds (a nested table), or None for a value."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


def toml_value(value: Any) -> str:
    """A value as the default file spells it (strings in double quotes, floats by ``repr``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML spelling for {value!r}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _comment(text: str) -> list[str]:
    return [f"# {line}" if line else "#" for line in text.split("\n")] if text else []


def _table(dotted: str, cls: type[Section]) -> list[str]:
    lines = [f"[{dotted}]", *_comment(section_comment(cls))]
    nested: list[str] = []
    for name, field in cls.model_fields.items():
        sub = section_type(field.annotation)
        if sub is not None:
            nested += ["", *_table(f"{dotted}.{name}", sub)]
        elif typing.get_origin(field.annotation) is dict and section_type(typing.get_args(field.annotation)[1]):
            entry = section_type(typing.get_args(field.annotation)[1])
            assert entry is not None
            for key in field.default:  # a table of named tables: none by default ([llm.systems])
                nested += ["", *_table(f"{dotted}.{name}.{toml_key(key)}", entry)]
        else:
            lines += _comment(field.description or "")
            lines.append(f"{name} = {extra(field).get('toml') or toml_value(field.default)}")
    return lines + nested


def default_config_text() -> str:
    """The commented default ``itcollect.toml``: every section, every key with its default."""
    lines = _comment(FILE_COMMENT)
    for name, field in Settings.model_fields.items():
        sub = section_type(field.annotation)
        lines.append("")
        if sub is not None:
            lines += _table(name, sub)
        else:  # a table of the user's keys ([prices]): its comment, then its default entries
            lines += [f"[{name}]", *_comment(field.description or "")]
            lines += extra(field).get("toml", "").split("\n") if extra(field).get("toml") else [
                f"{toml_key(k)} = {toml_value(v)}" for k, v in field.default.items()]
    return "\n".join(lines) + "\n"


# --- Markdown ---------------------------------------------------------------------------------

def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "string"
    if origin is tuple:
        return f"list of {_type_name(args[0])}s"
    if origin is dict:
        return f"table of {_type_name(args[1])}s (your keys)"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def number(x: float) -> str:
    """A bound as people write it: ``0``, ``1024``, ``0.5``."""
    return str(int(x)) if float(x).is_integer() else str(x)


def bounds(field: FieldInfo) -> dict[str, float]:
    """A field's declared bounds: ``{"ge": ..., "le": ..., "gt": ...}``, those it has."""
    return {type(m).__name__.lower(): getattr(m, type(m).__name__.lower()) for m in field.metadata
            if type(m).__name__ in ("Ge", "Le", "Gt")}


def allowed(field: FieldInfo) -> str:
    """What a field accepts beyond its type: choices, bounds."""
    if extra(field).get("allowed"):
        return str(extra(field)["allowed"])
    choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()
    if choices:
        return ", ".join(f"`{toml_value(c)}`" for c in choices)
    b = bounds(field)
    if "ge" in b and "le" in b:
        return f"{number(b['ge'])} to {number(b['le'])}"
    if "ge" in b:
        return f"at least {number(b['ge'])}"
    if "gt" in b:
        return f"more than {number(b['gt'])}"
    if "le" in b:
        return f"at most {number(b['le'])}"
    return ""


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def _md_table(dotted: str, cls: type[Section]) -> Iterator[str]:
    yield f"## `[{dotted}]`"
    yield ""
    if section_comment(cls):
        yield _cell(section_comment(cls))
        yield ""
    rows, nested, previous = [], [], ""
    for name, field in cls.model_fields.items():
        sub = section_type(field.annotation)
        if sub is not None:
            nested.append((f"{dotted}.{name}", sub))
            continue
        entry = section_type(typing.get_args(field.annotation)[1]) if typing.get_origin(field.annotation) is dict else None
        if entry is not None:
            nested.append((f"{dotted}.{name}.NAME", entry))
            continue
        described = field.description or extra(field).get("doc") or (f"With `{previous}` above." if previous else "")
        default = extra(field).get("toml") or toml_value(field.default)
        rows.append(f"| `{name}` | {_type_name(field.annotation)} | `{_cell(default)}` | {allowed(field)} "
                    f"| {_cell(described)} |")
        if field.description:
            previous = name
    if rows:
        yield "| Key | Type | Default | Allowed | What it does |"
        yield "|---|---|---|---|---|"
        yield from rows
        yield ""
    for check in cls.checks:
        yield f"Also checked: {check.message}."
        yield ""
    for sub_dotted, sub in nested:
        yield from _md_table(sub_dotted, sub)


def markdown_reference() -> str:
    """``docs/config.md``: every section and key of ``itcollect.toml`` with its type, default,
    allowed values and comment, generated from the declaration."""
    out = ["# Configuration reference (`itcollect.toml`)", "",
           "<!-- Generated from itcollect/config/schema.py by "
           "`python -m itcollect.config --markdown > docs/config.md`; do not edit. -->", "",
           _cell(FILE_COMMENT) + " `itcollect init` writes every key below with its default and comment.", ""]
    for name, field in Settings.model_fields.items():
        sub = section_type(field.annotation)
        if sub is not None:
            out += list(_md_table(name, sub))
        else:
            out += [f"## `[{name}]`", "", _cell(field.description or ""), "",
                    f"Each key is yours; each value a {_type_name(typing.get_args(field.annotation)[1])[:-1]}. "
                    "A table you write replaces the default entries as a whole. Default:", "", "```toml",
                    extra(field).get("toml") or toml_value(field.default), "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"
