"""Command-line options derived from the pydantic configs, so the CLI, the Python API and the
Prefect forms say the same thing: one description, one default, one set of choices per field.

An option's argparse default is None, so a flag the user did not give leaves the config's own
default (or `$LLOCO_ROOT`) in charge; the help text shows that default. Kept free of torch and
of any heavy import: `lloco <cmd> --help` must answer at once.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lloco_core.config import CorpusConfig, default_root

STORE_FIELDS = ("corpus", "root", "endpoint_url")


def flag(name: str) -> str:
    """`segment_length` -> `--segment-length`."""
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    """`int | None` -> `int`; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def comma_list(value: str) -> list[str]:
    """`a,b, c` -> ["a", "b", "c"] (for list options given once or repeated)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def default_text(name: str, field: FieldInfo) -> str:
    """The default as help shows it: the value, `$LLOCO_ROOT`'s current value for the root, or
    `not set` where the description already says what an empty value means."""
    if name == "root":
        return default_root()
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return ""
    else:
        value = field.default
    if value is None:
        return "" if "default" in (field.description or "").lower() else "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def help_text(name: str, field: FieldInfo) -> str:
    """The field's description plus its default (argparse escapes: `%` doubled)."""
    text = (field.description or name.replace("_", " ")).rstrip()
    default = default_text(name, field)
    if field.is_required():
        text = f"{text} (required)"
    elif name == "root":
        text = f"{text} (here: {default})"
    elif default:
        text = f"{text} (default: {default})"
    return text.replace("%", "%%")


def argument_spec(name: str, field: FieldInfo) -> dict[str, Any]:
    """add_argument keywords for a field: type, choices, metavar, bool flags, list handling."""
    annotation = _unwrap_optional(field.annotation)
    origin = typing.get_origin(annotation)
    spec: dict[str, Any] = {"dest": name, "default": None, "help": help_text(name, field)}
    if origin is Literal:
        choices = list(typing.get_args(annotation))
        spec.update(choices=choices, type=type(choices[0]), metavar="{" + ",".join(map(str, choices)) + "}")
    elif annotation is bool:
        # a plain switch for fields that default to off; --x/--no-x where the default is "auto" (None) or on
        spec["action"] = "store_const" if field.default is False else argparse.BooleanOptionalAction
        if field.default is False:
            spec["const"] = True
    elif origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        item_origin = typing.get_origin(item)
        choices = list(typing.get_args(item)) if item_origin is Literal else None
        spec.update(type=comma_list, action="extend", metavar="A,B")
        if choices:
            spec["help"] = spec["help"].replace(" (default:", f"; of {','.join(map(str, choices))} (default:", 1)
    elif annotation in (int, float):
        spec.update(type=annotation, metavar="N" if annotation is int else "X")
    else:
        spec.update(metavar=name.upper())
    if field.is_required():
        spec["required"] = True
    return spec


def _taken(parser: argparse.ArgumentParser, option: str, dest: str) -> bool:
    return option in parser._option_string_actions or any(a.dest == dest for a in parser._actions)


def add_config_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    names: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    flags: dict[str, str] | None = None,
    **overrides: dict[str, Any],
) -> None:
    """One option per field of `model` (all, or `names`), skipping `exclude` and any option the
    command already defined by hand. `flags` renames (`{"doc_id": "--doc"}`); `overrides` adjust
    add_argument keywords per field (`options={"action": "append", "type": str}`)."""
    excluded = set(exclude)
    flags = flags or {}
    for name in names if names is not None else model.model_fields:
        if name in excluded:
            continue
        option = flags.get(name, flag(name))
        if _taken(parser, option, name):
            continue
        spec = argument_spec(name, model.model_fields[name]) | overrides.get(name, {})
        parser.add_argument(option, **spec)


def add_positional(parser: argparse.ArgumentParser, model: type[BaseModel], name: str, metavar: str) -> None:
    """A required positional argument for field `name`, with the field's description as help."""
    parser.add_argument(name, metavar=metavar, help=help_text(name, model.model_fields[name]))


def add_store_options(parser: argparse.ArgumentParser, corpus_required: bool = True) -> None:
    """--corpus, --root, --endpoint-url, described by CorpusConfig."""
    corpus = {"required": corpus_required, "metavar": "NAME"}
    if not corpus_required:
        corpus["help"] = help_text("corpus", CorpusConfig.model_fields["corpus"]).replace(" (required)", " (default: every corpus)")
    add_config_options(parser, CorpusConfig, STORE_FIELDS, corpus=corpus, root={"metavar": "URL"}, endpoint_url={"metavar": "URL"})


def config_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The options the user gave that `model` knows: config defaults apply to the rest."""
    return {k: v for k, v in vars(args).items() if k in model.model_fields and v is not None}


def config_fields(args: argparse.Namespace, model_fields: dict[str, Any]) -> dict[str, Any]:
    """Like `config_values`, for callers holding `Model.model_fields`."""
    return {k: v for k, v in vars(args).items() if k in model_fields and v is not None}


def store_fields(args: argparse.Namespace) -> dict[str, str]:
    """Only the store options the user gave, so config defaults (e.g. $LLOCO_ROOT) apply otherwise."""
    return {k: v for k in STORE_FIELDS if (v := getattr(args, k, None)) is not None}
