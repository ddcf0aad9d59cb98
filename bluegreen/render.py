"""Templates — the only jinja2 importer. Command templates quote every substituted value for the
shell by default; config templates render plain text. Both use StrictUndefined, so a misspelt
variable is an error (exit 2), never an empty string."""

from __future__ import annotations

import shlex
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from bluegreen.errors import TemplateError
from bluegreen.shell import Command, Secret

TEMPLATE_PACKAGE = "bluegreen"


def render_command(template: str, values: dict[str, Any], *, where: str,
                   env: dict[str, str | Secret] | None = None) -> Command:
    """A user command template as a `sh -c` command with every value quoted."""
    return Command("sh", "-c", render_command_text(template, values, where=where), env=env)


def render_command_text(template: str, values: dict[str, Any], *, where: str) -> str:
    """The shell text of a user command template, every substituted value quoted."""
    return _render(_COMMAND, template, values, where=where)


def render_text(template: str, values: dict[str, Any], *, where: str) -> str:
    """A short user template (an expected body or header) rendered without quoting."""
    return _render(_TEXT, template, values, where=where)


def render_config(template_text: str, values: dict[str, Any], *, where: str) -> str:
    return _render(_TEXT, template_text, values, where=where)


def uses_variable(template: str, name: str) -> bool:
    """Whether a user template refers to the variable `name` (a syntax error: no, and it is
    reported when the template renders)."""
    return name in _variables(template)


@lru_cache(maxsize=256)
def _variables(template: str) -> frozenset[str]:
    import jinja2
    from jinja2 import meta

    try:
        return frozenset(meta.find_undeclared_variables(_text_environment().parse(template)))
    except jinja2.TemplateSyntaxError:
        return frozenset()


def shipped_template(name: str) -> str:
    """A template shipped with bluegreen (``templates/`` in the source tree and the wheel)."""
    source = Path(__file__).resolve().parent.parent / "templates" / name
    if source.is_file():
        return source.read_text()
    return resources.files(TEMPLATE_PACKAGE).joinpath("templates").joinpath(name).read_text()


_COMMAND, _TEXT = "command", "text"


@lru_cache(maxsize=512)
def _compiled(kind: str, template: str) -> Any:
    """A template compiled once per run: an operation renders the same few templates for every
    host, and compiling one costs ~1 ms where rendering it costs ~20 µs. A compiled template
    renders safely from several threads."""
    environment = _command_environment() if kind == _COMMAND else _text_environment()
    return environment.from_string(template)


def _render(kind: str, template: str, values: dict[str, Any], *, where: str) -> str:
    import jinja2

    try:
        return str(_compiled(kind, template).render(**values))
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template uses an unknown variable: {exc.message}.",
            where=where,
            hint=f"Available variables: {', '.join(sorted(values))}.",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}.",
                            where=where) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template error: {exc}.", where=where) from None


def _quote(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, Secret):
        raise TemplateError("a secret cannot be substituted into a command; it is passed as an "
                            "environment variable instead.")
    return shlex.quote(str(value))


class _Raw:
    def __init__(self, text: str):
        self.text = text


@lru_cache(maxsize=1)
def _command_environment() -> Any:
    # sandboxed: a template from an inventory must not reach Python's internals
    # ({{ cycler.__init__.__globals__.os.system(…) }}) on the machine running bluegreen
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, finalize=_quote, keep_trailing_newline=False,
        autoescape=False)
    environment.filters["raw"] = lambda value: _Raw(str(value))
    return environment


@lru_cache(maxsize=1)
def _text_environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
        trim_blocks=True, lstrip_blocks=True)
