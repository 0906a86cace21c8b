"""A command line's mistakes as one line ``error: ...``: the argparse parser of ``sweep`` and ``report``
(:class:`OneLineParser`), and for ``fit`` what LightningCLI, jsonargparse and Lightning raise, told apart from bugs
(:func:`one_line`, :func:`user_error_in_chain`, :func:`rejected_by_lightning`)."""

from __future__ import annotations

import argparse
import os
import re
import traceback
from typing import Optional

from gan_lightning.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a one-line ``UserError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def rejected_by_lightning(err: BaseException) -> bool:
    """Whether ``err`` is Lightning refusing a trainer setting (accelerator, devices, strategy, precision): raised
    by Lightning's own code while its accelerator connector checks the settings, not by a class of the project."""
    frames = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(err.__traceback__)]
    lightning = os.sep + "lightning" + os.sep
    connector = os.path.join("trainer", "connectors", "accelerator_connector.py")
    return any(f.endswith(connector) for f in frames) and bool(frames) and lightning in frames[-1]


def user_error_in_chain(err: BaseException) -> Optional[UserError]:
    """The first ``UserError`` among ``err`` and the exceptions it was raised from (``__cause__``, ``__context__``)."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        e = stack.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        stack += [e.__cause__, e.__context__]
    return None


# Lines of jsonargparse's nested error text that say nothing about the mistake itself.
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|Given value type: |"
    r"Problem with given class_path|Expected a NoneType|Expected a path but .* either not accessible or invalid)"
)


def one_line(message: str) -> str:
    """A jsonargparse parse error (often several indented lines: a Union's alternatives, a class's init_args) as one
    line: the dotted key, what was expected, and the value given."""
    keys: list[str] = []
    reasons: list[str] = []
    given: Optional[str] = None
    for raw in message.splitlines():
        line = raw.strip()
        line = line[2:] if line.startswith("- ") else line
        while (m := re.match(r'Parser key "([^"]+)":\s*(.*)$', line)) is not None:
            if m.group(1) not in keys:
                keys.append(m.group(1))
            line = m.group(2)
        line = re.sub(r"<class '([\w.]+)'>", r"\1", line)
        line = re.sub(r"typing\.Literal\[(.*)\]", r"one of [\1]", line)
        if not line or _NOISE.match(line):
            continue
        if line.startswith("Given value: "):
            given = given or line[len("Given value: "):]
            continue
        m = re.search(r"\. Got value: (.*)$", line)
        if m:
            given, line = given or m.group(1), line[: m.start()]
        line = line[:1].lower() + line[1:] if line[1:2].islower() else line
        if line not in reasons:
            reasons.append(line)
    if given is not None:
        reasons = [r[: -len(given) - 2] if r.endswith(": " + given) else r for r in reasons]
        if len(given) > 60 or given.startswith(("Namespace(", "NestedArg(")):
            given = None
    expected = [re.match(r"expected (?:an? )?(.*)$", r) for r in reasons]
    if reasons and all(expected):  # the alternatives of a Union, or one type
        text = "expected " + " or ".join(m.group(1) for m in expected if m)
    else:
        text = "; ".join(reasons) or " ".join(message.split())
    if given is not None:
        text += f" (got {given})"
    if text.startswith("unrecognized arguments"):
        text += "; python -m gan_lightning fit --help lists the options"
    return f"{'.'.join(keys)}: {text}" if keys else text
