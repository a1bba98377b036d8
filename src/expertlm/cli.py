"""The command line, generated: every verb, argument and option comes from the stage registry
(`experiment/stages.py`) and the stage's config class (`config.py`). Flag names come from field
names (`config.flag`), help from the fields' docstrings, defaults from the models; only the
flags every stage shares (--overwrite, --no-progress, ...) and the groups' titles are written
here. A command passes the options the user gave, so the defaults are the models' own.

User errors (`ExpertlmError`, and click's usage errors: a bad value, an unknown option) become
one `error:` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import click
from click.core import ParameterSource
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from expertlm import __version__, config
from expertlm.errors import ExpertlmError
from expertlm.experiment.stages import STAGE_KINDS, StageKind, load

GROUPS = {
    "corpus": "Build training corpora from a field's literature.",
    "classifier": "Train text classifiers that pick a field's documents out of others.",
    "tokenizer": "Train and compare tokenizers.",
    "data": "Tokenize corpora into training shards.",
    "bench": "Make benchmarks from a field's newest papers; fetch published ones; export them.",
    "eval": "Score models on benchmarks and corpora; compare results; human baselines.",
}
SHARED = {  # the parameters several stages take, besides inputs, out and options
    "overwrite": lambda: click.Option(["--overwrite"], is_flag=True,
                                      help="Replace an existing output (a download: start over)."),
    "show_progress": lambda: click.Option(["--no-progress", "show_progress"], is_flag=True,
                                          flag_value=False, default=True,
                                          help="Do not show progress bars."),
    "resume": lambda: click.Option(["--resume"], is_flag=True,
                                   help="Continue from the run's latest checkpoint."),
    "json": lambda: click.Option(["--json", "as_json"], is_flag=True,
                                 help="Print JSON instead of tables."),
}  # fmt: skip
TRISTATE = {"auto": None, "yes": True, "no": False}


# --- option types ----------------------------------------------------------------------------


class KeyValue(click.ParamType):
    """FIELD=VALUE, the value parsed as JSON where it can be (4 -> int, 0.1 -> float)."""

    name = "FIELD=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected FIELD=VALUE, e.g. n_layer=4 (got {value!r})", param, ctx)
        try:
            return key, json.loads(raw)
        except json.JSONDecodeError:
            return key, raw


class Numbers(click.ParamType):
    """Comma-separated numbers: 0.7,0.3."""

    name = "X,Y,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [float(v) for v in str(value).split(",")]
        except ValueError:
            self.fail(f"expected comma-separated numbers, e.g. 0.5,0.5 (got {value!r})", param, ctx)


def _base(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _bool_or(annotation: Any) -> tuple[str, ...]:
    """The words of a `bool | Literal[...]` field besides yes and no (bf16's auto), else ()."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType) or bool not in args:
        return ()
    return tuple(w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a))


def option_spec(name: str, field: FieldInfo) -> dict[str, Any]:
    """How config field `name` appears on the command line: click's keyword arguments for its
    parameter, its default as the command line writes it included."""
    if words := _bool_or(field.annotation):  # --bf16 alone is yes; --bf16 no, --bf16 auto
        default = field.get_default(call_default_factory=True)
        return {"type": click.Choice(["yes", "no", *words]), "is_flag": False, "flag_value": "yes",
                "default": {True: "yes", False: "no"}.get(default, default)}  # fmt: skip
    ann, optional = _base(field.annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    default = field.get_default(call_default_factory=True)
    if ann is bool and optional:
        return {"type": click.Choice(list(TRISTATE)), "default": next(k for k, v in TRISTATE.items() if v is default)}
    if ann is bool:
        return {"is_flag": True, "default": default}
    if origin is Literal:
        return {"type": click.Choice([str(a) for a in args]), "default": default}
    if origin is list and args == (float,):
        return {"type": Numbers(), "default": None if default is None else ",".join(map(str, default))}
    if origin is list:
        return {"type": click.STRING, "multiple": True, "default": tuple(map(str, default or ()))}
    if origin is dict or (not optional and isinstance(ann, type) and issubclass(ann, BaseModel)):
        # FIELD=VALUE, repeatable (a model of options that may be left out is one string instead:
        # --lora r=8,alpha=16)
        default = default.model_dump() if isinstance(default, BaseModel) else default
        return {"type": KeyValue(), "multiple": True,
                "default": tuple(f"{k}={json.dumps(v)}" for k, v in default.items())}  # fmt: skip
    if origin is tuple:
        return {"type": click.STRING, "default": "-".join(map(str, default))}
    kind = {int: click.INT, float: click.FLOAT}.get(ann, click.STRING)
    return {"type": kind, "default": default, "metavar": "PATH" if ann is Path else None}


def option_value(field: FieldInfo, value: Any) -> Any:
    """A command-line value as the config model takes it."""
    if _bool_or(field.annotation):
        return {"yes": True, "no": False}.get(value, value)
    ann, optional = _base(field.annotation)
    if ann is bool and optional:
        return TRISTATE[value]
    if typing.get_origin(ann) is dict or (not optional and isinstance(ann, type) and issubclass(ann, BaseModel)):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _config_param(name: str, field: FieldInfo, positional: bool) -> click.Parameter:
    spec = option_spec(name, field)
    if positional:
        return click.Argument([name], type=spec["type"], required=True, metavar=name.upper())
    flags = config.flag(name)
    if spec.get("is_flag"):
        flags = f"{flags}/{config.OFF_FLAGS.get(name, '--no-' + flags[2:])}"
    return click.Option([flags, name], help=field.description, show_default=True, **spec)


def _input_param(inp) -> click.Parameter:
    metavar = "PATH|HUB_ID" if inp.artifact in ("model", "tokenizer") else "PATH"
    if not inp.flags:
        return click.Argument([inp.name], nargs=-1 if inp.many else 1, required=inp.required,
                              metavar=inp.name.upper() + ("..." if inp.many else ""))  # fmt: skip
    return click.Option([*inp.flags, inp.name], required=inp.required, multiple=inp.many,
                        help=inp.help, metavar=metavar)  # fmt: skip


# --- commands --------------------------------------------------------------------------------


def command(kind: StageKind) -> click.Command:
    """The click command of a registered stage kind."""
    fields = kind.config.model_fields
    params: list[click.Parameter] = [_config_param(n, fields[n], True) for n in kind.positional]
    params += [_input_param(i) for i in kind.inputs]
    if kind.output is not None:
        o = kind.output
        params.append(click.Option(["--out", "-o", "out"], required=o.required, default=o.default,
                                   help=o.help, show_default=o.default is not None, metavar="PATH"))  # fmt: skip
    params += [_config_param(n, f, False) for n, f in fields.items() if n not in kind.positional]
    params += [SHARED[f]() for f in kind.flags]
    args = [(n.upper(), fields[n].description) for n in kind.positional]
    args += [(i.name.upper() + ("..." if i.many else ""), i.help) for i in kind.inputs if not i.flags]
    text = kind.help
    if args:  # click's arguments have no help of their own: listed under the description
        text += "\n\n\b\nArguments:\n" + "\n".join(f"  {name}  {help}" for name, help in args)

    def run(**values: Any) -> None:
        ctx = click.get_current_context()
        given = {k for k in values if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
        call = {i.name: list(values[i.name]) if i.many else values[i.name] for i in kind.inputs}
        if kind.output is not None:
            call["out"] = values["out"]
        call |= {f: values[f] for f in kind.flags if f != "json"}
        call |= {n: option_value(fields[n], values[n]) for n in fields
                 if n in given or n in kind.positional}  # fmt: skip
        result = kind.load()(**call)
        if kind.show is not None:
            if values.get("as_json"):
                print(json.dumps(result, indent=2, ensure_ascii=False))
            else:
                load(kind.show)(result)

    return click.Command(kind.command.split()[-1], callback=run, params=params, help=text,
                         no_args_is_help=bool(args or kind.positional))  # fmt: skip


def _version(ctx: click.Context, _param, value: bool) -> None:
    if value:
        click.echo(f"expertlm {__version__}")
        ctx.exit()


def build() -> click.Group:
    root = click.Group(
        "expertlm", no_args_is_help=True,
        help="Train small language models on a field's literature and measure whether they "
             "predict results like experts.",
        params=[click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                             callback=_version, help="Print the version and exit.")],
    )  # fmt: skip
    for kind in STAGE_KINDS:
        if kind.command is None:
            continue
        *group, _ = kind.command.split()
        parent = root
        for g in group:
            if g not in parent.commands:
                parent.add_command(click.Group(g, help=GROUPS[g], no_args_is_help=True))
            parent = parent.commands[g]  # type: ignore[assignment]
        parent.add_command(command(kind))  # type: ignore[union-attr]
    return root


app = build()


def _error(msg: str) -> None:
    from rich.markup import escape

    from expertlm.console import console

    for line in msg.splitlines() or ["error"]:
        console.print(f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False,
                      soft_wrap=True)  # fmt: skip


def _usage_message(e: click.UsageError) -> str:
    """One line: `option --x: ...` for a bad value (our types say what they expected; click's
    own say only what was wrong), click's message otherwise, and where to look for help."""
    msg = e.format_message()
    param = getattr(e, "param", None)
    if isinstance(e, click.BadParameter) and param is not None:
        what = f"option {param.opts[0]}" if isinstance(param, click.Option) else f"argument {param.name.upper()}"
        own = isinstance(param.type, (KeyValue, Numbers))
        msg = f"{what}: {e.message}" if own else f"{what}: Invalid value: {e.message}"
    where = f" (see {e.ctx.command_path} --help)" if e.ctx else ""
    return " ".join(msg.split()) + where


def main(argv: list[str] | None = None) -> None:
    token = config.COMMAND_LINE.set(True)
    try:
        _main(argv)
    finally:
        config.COMMAND_LINE.reset(token)


def _main(argv: list[str] | None) -> None:
    try:
        code = app.main(args=argv, prog_name="expertlm", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else e.format_message())
        code = 0
    except click.UsageError as e:  # a bad value, an unknown option, a missing argument
        _error(_usage_message(e))
        code = 2
    except ExpertlmError as e:
        _error(str(e))
        code = 2
    except (KeyboardInterrupt, click.Abort):
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

