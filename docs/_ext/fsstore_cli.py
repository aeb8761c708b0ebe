"""The ``fsstore-command`` directive: the command reference, read from the parser.

It imports ``fsstore.cli.main.build_parser()`` and renders the program and
every subcommand, recursively (``cache`` has subcommands of its own): the
usage line, the help, and each argument with its help, choices and
default. Nothing is written by hand, so a new subcommand or flag appears in
the reference the next time the docs are built.

Help strings are plain text: they become text nodes, never parsed as
reStructuredText. Options accepted by the program itself (``--config-file``,
``--format``, ...) are also accepted after any subcommand; they are listed
once, under the program, and left out of each subcommand's usage and list.

Usage in a page::

    .. fsstore-command::
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id

# Wide enough for the usage lines of the longer subcommands to wrap rarely,
# narrow enough for a literal block on a page.
USAGE_WIDTH = 76


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _shown(action: argparse.Action, inherited: set[str]) -> bool:
    """Whether an argument is listed: not -h, not hidden, not subcommands,
    not a program-wide option repeated in a subcommand."""
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return False
    if action.help == argparse.SUPPRESS:
        return False
    return not (action.option_strings and set(action.option_strings) & inherited)


def _usage(
    parser: argparse.ArgumentParser, actions: list[argparse.Action], sub: Any
) -> str:
    formatter = _formatter(parser)
    shown = list(actions)
    if sub is not None:
        # "COMMAND ...", not every subcommand's name: each has a section.
        sub = copy.copy(sub)
        sub.metavar = "COMMAND"
        shown.append(sub)
    groups = [
        group
        for group in parser._mutually_exclusive_groups
        if all(a in shown for a in group._group_actions)
    ]
    formatter.add_usage(None, shown, groups, prefix="")
    return formatter.format_help().strip()


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    try:
        return _formatter(parser)._expand_help(action).strip()
    except (KeyError, TypeError, ValueError):
        return action.help.strip()


def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = _formatter(parser)
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    value = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{flag} {value}" for flag in action.option_strings)


def _details(action: argparse.Action, help_text: str) -> list[str]:
    """Choices and default, when the help does not give them already."""
    details = []
    # The usage shows {a,b} unless a metavar hides the choices.
    if (
        action.choices
        and action.metavar is not None
        and not all(str(choice) in help_text for choice in action.choices)
    ):
        details.append("choices: " + ", ".join(str(c) for c in action.choices))
    default = action.default
    if (
        action.option_strings
        and action.nargs != 0
        and default not in (None, argparse.SUPPRESS, [], "")
        and "default" not in help_text
    ):
        details.append(f"default: {default}")
    return details


def _argument(parser: argparse.ArgumentParser, action: argparse.Action) -> nodes.Node:
    help_text = _help(parser, action)
    term = nodes.term("", "")
    term += nodes.literal(text=_invocation(parser, action))
    if action.required and action.option_strings:
        term += nodes.Text(" (required)")
    definition = nodes.definition()
    text = help_text
    details = _details(action, help_text)
    if details:
        text = "; ".join([t for t in (help_text, *details) if t])
    if text:
        definition += nodes.paragraph(text=text)
    return nodes.definition_list_item("", term, definition)


class FsstoreCommandDirective(SphinxDirective):
    has_content = False
    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        from fsstore.cli.main import build_parser

        parser = build_parser()
        inherited = {
            flag
            for action in parser._actions
            if _shown(action, set())
            for flag in action.option_strings
        }
        return [self._section(parser, parser.description or "", set(), inherited)]

    def _section(
        self,
        parser: argparse.ArgumentParser,
        description: str,
        excluded: set[str],
        inherited: set[str],
    ) -> nodes.section:
        title = parser.prog
        section = nodes.section(ids=[make_id(self.env, self.state.document, "", title)])
        section += nodes.title(text=title)
        if description:
            section += nodes.paragraph(text=description)
        actions = [a for a in parser._actions if _shown(a, excluded)]
        sub = _subparsers(parser)
        section += nodes.literal_block(text=_usage(parser, actions, sub))
        if actions:
            items = nodes.definition_list()
            for action in actions:
                items += _argument(parser, action)
            section += items
        if parser.epilog:
            section += nodes.paragraph(text=parser.epilog)
        if sub is not None:
            helps = {a.dest: a.help or "" for a in sub._get_subactions()}
            seen: set[int] = set()
            for name, child in sub.choices.items():
                if id(child) in seen:  # an alias of a subcommand already shown
                    continue
                seen.add(id(child))
                about = child.description or helps.get(name, "")
                section += self._section(child, about, inherited, inherited)
        return section


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("fsstore-command", FsstoreCommandDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
