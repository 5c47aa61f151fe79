"""Prompt templates: Jinja2 files under ``prompts/``, rendered in a sandbox.

Why a sandbox and StrictUndefined: templates may come from a user's folder ([prompts].dir), a typo
in a variable name must fail loudly instead of producing a prompt with a hole in it, and source
sentences are *data* — they are passed as variables and never compiled, so a news sentence that
contains ``{{ 7*7 }}`` or "ignore previous instructions" is printed exactly as written.

Every rendering carries the template's content hash (sha256 over the template source and the
sources of everything it includes), which simulate stores with the turn it produced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from itcollect.config import settings
from itcollect.kernel.checks import LANG_NAMES, LANG_NAMES_ZH
from itcollect.kernel.errors import ConfigError, InputError


def bundled_dir() -> Path:
    """The folder of the bundled templates (``prompts/`` shipped as package ``itcollect.prompts``)."""
    from importlib.resources import files

    return Path(str(files("itcollect.prompts")))


def quote_source(text: Any) -> str:
    """A sentence as quoted data on its own: straight double quotes, inner ones made typographic."""
    s = str(text).replace('"', "”")
    return f'"{s}"'


def _lang_name(code: str) -> str:
    return LANG_NAMES.get(code, code)


def _lang_name_zh(code: str) -> str:
    return LANG_NAMES_ZH.get(code, code)


@dataclass(frozen=True)
class Rendered:
    text: str
    name: str
    hash: str


class Prompts:
    """Renders templates by name; a user folder overrides the bundled templates file by file."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        self.user_dir = Path(user_dir) if user_dir else None
        if self.user_dir is not None:
            if not self.user_dir.is_dir():
                raise ConfigError("prompts.dir is not a folder", path=str(self.user_dir))
            loaders.append(jinja2.FileSystemLoader(str(self.user_dir)))
        loaders.append(jinja2.FileSystemLoader(str(bundled_dir())))
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, autoescape=False,
            keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False)  # one run renders thousands of times: no stat() of the file per render
        self.env.filters["quote"] = quote_source
        self.env.filters["lang_name"] = _lang_name
        self.env.filters["lang_name_zh"] = _lang_name_zh
        self._hashes: dict[str, str] = {}

    def source(self, name: str) -> str:
        try:
            src, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise ConfigError(f"prompt template {name!r} not found", path=str(self.user_dir or bundled_dir())) from None
        return src

    def template_hash(self, name: str) -> str:
        """sha256 of the template and (recursively) the templates it includes, imports or extends."""
        if name in self._hashes:
            return self._hashes[name]
        h = hashlib.sha256()
        seen: set[str] = set()

        def feed(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            src = self.source(n)
            h.update(n.encode() + b"\0" + src.encode("utf-8") + b"\0")
            for ref in sorted(r for r in meta.find_referenced_templates(self.env.parse(src)) if r):
                feed(ref)

        feed(name)
        self._hashes[name] = h.hexdigest()
        return self._hashes[name]

    def exists(self, name: str) -> bool:
        try:
            self.source(name)
            return True
        except ConfigError:
            return False

    def warm_up(self) -> None:
        """Compile and hash every template now (~15 ms each): a long async run calls this before
        its first request, so compiling does not stall the event loop between two calls. A broken
        template is left to fail, with its message, where it is used."""
        for name in self.env.list_templates(extensions=["j2"]):
            try:
                self.env.get_template(name)
                self.template_hash(name)
            except Exception:  # noqa: BLE001 - reported by render() if the run ever uses it
                continue

    def render(self, name: str, **variables: Any) -> Rendered:
        """Render ``name``; an undefined variable or a broken template is a ConfigError naming the file."""
        try:
            text = self.env.get_template(name).render(**variables)
        except jinja2.TemplateNotFound:
            raise ConfigError(f"prompt template {name!r} not found", path=str(self.user_dir or bundled_dir())) from None
        except jinja2.TemplateSyntaxError as exc:
            raise InputError(f"template syntax error: {exc.message}", path=exc.filename or name, line=exc.lineno) from None
        except jinja2.UndefinedError as exc:
            raise InputError(f"template uses an undefined variable: {exc.message}", path=name) from None
        except jinja2.exceptions.SecurityError as exc:
            raise InputError(f"template tried an unsafe operation: {exc}", path=name) from None
        return Rendered(text.strip(), name, self.template_hash(name))


@lru_cache(maxsize=8)
def _cached(user_dir: str) -> Prompts:
    return Prompts(user_dir or None)


def load_prompts(config: dict[str, Any] | None = None, base: str | Path | None = None) -> Prompts:
    """The prompts of a workspace: [prompts].dir (relative to the workspace) over the bundled ones."""
    d = settings(config).prompts.dir
    if d and base is not None and not Path(d).is_absolute():
        d = str(Path(base) / d)
    return _cached(str(d))


__all__ = ["Prompts", "Rendered", "load_prompts", "bundled_dir"]
