"""A jinja2 sandbox with resource limits: no template makes a huge value, loops forever or writes a book.

jinja2's own sandbox stops templates reaching Python internals but not ``'a' * 10**10`` or
``9**9**9``. This one checks the operators, calls and filters that can grow a value before they
run, counts loop iterations and calls per render, and stops rendering once the output is too long. Every
refusal is a ``TemplateTooCostly`` (a jinja2 ``SecurityError``), so callers that already handle
sandbox errors handle it too.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

MAX_LENGTH = 100_000  # characters of a string, items of a list, built by one operation
MAX_INT_BITS = 4_096  # about 1,200 decimal digits
MAX_WIDTH = 1_000  # a format width or precision
MAX_STEPS = 100_000  # loop iterations and calls (macros recurse) in one render, all together
MAX_OUTPUT = 256 * 1024  # characters one render may produce

_BUDGET_NAME = "tl_loop_budget"
# printf-style conversions: %[(name)][flags][width][.precision]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_FORMAT_FIELD = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")
_NUMBER = re.compile(r"\d+")
_SEQUENCES = (str, bytes, list, tuple)
_remaining: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_loop_budget")


class TemplateTooCostly(SecurityError):
    """A template asked for more memory, time or output than any message needs."""


def _refuse(what: str) -> TemplateTooCostly:
    return TemplateTooCostly(f"template refused: {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse ``left op right`` when its result would be too large to build."""
    if op == "*":
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _refuse(f"a product of more than {MAX_INT_BITS} bits")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and _is_int(times) and len(seq) * times > MAX_LENGTH:
                raise _refuse(f"a repeated value longer than {MAX_LENGTH}")
    elif op == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            if right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
                raise _refuse(f"a power of more than {MAX_INT_BITS} bits")
    elif op == "+":
        if (
            isinstance(left, _SEQUENCES)
            and isinstance(right, _SEQUENCES)
            and len(left) + len(right) > MAX_LENGTH
        ):
            raise _refuse(f"a concatenation longer than {MAX_LENGTH}")
    elif op == "%" and isinstance(left, str):
        check_printf(left)


def check_printf(template: str) -> None:
    """Refuse a ``%`` format whose widths or precisions could pad a value to any size."""
    for width, precision in _PRINTF.findall(template):
        for size in (width, precision):
            if size == "*" or (size and int(size) > MAX_WIDTH):
                raise _refuse(f"a format width over {MAX_WIDTH}")


def check_format(template: str) -> None:
    """Refuse a ``str.format`` template whose fields pad beyond ``MAX_WIDTH`` or take widths from arguments."""
    for field in _FORMAT_FIELD.findall(template):
        _, colon, spec = field[1:-1].partition(":")
        if colon and ("{" in spec or any(int(n) > MAX_WIDTH for n in _NUMBER.findall(spec))):
            raise _refuse(f"a format width over {MAX_WIDTH}")


def _check_result_length(length: int, what: str) -> None:
    if length > MAX_LENGTH:
        raise _refuse(f"{what} longer than {MAX_LENGTH}")


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a ``str`` method call that would build a string longer than ``MAX_LENGTH``."""
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if _is_int(width):
            _check_result_length(width, f"{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if _is_int(size):
            _check_result_length(len(text) * max(size, 1), "expandtabs()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_replace(text, args[0], args[1])
    elif name in ("format", "format_map"):
        check_format(text)


def _check_replace(text: str, old: str, new: str) -> None:
    count = text.count(old) if old else len(text) + 1
    _check_result_length(len(text) + count * max(0, len(new) - len(old)), "replace()")


def _bounded_join(separator: str, items: Iterable[Any]) -> list[str]:
    """The items of a join as strings, refused when the joined text would be too long."""
    parts: list[str] = []
    total = 0
    for item in items:
        part = str(item)
        total += len(part) + (len(separator) if parts else 0)
        _check_result_length(total, "a joined text")
        parts.append(part)
    return parts


def _bounded_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Wrap the built-in filters that can grow a value, checking their arguments first."""

    def guard(name: str, check: Callable[..., None]) -> None:
        original = filters[name]

        @functools.wraps(original)  # keeps jinja's pass_context/pass_eval_context marker
        def bounded(*args: Any, **kwargs: Any) -> Any:
            check(*args, **kwargs)
            return original(*args, **kwargs)

        filters[name] = bounded

    def center(value: Any, width: int = 80) -> None:
        if _is_int(width):
            _check_result_length(width, "center")

    def indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
        size = len(width) if isinstance(width, str) else width if _is_int(width) else 0
        lines = str(value).count("\n") + 1
        _check_result_length(len(str(value)) + lines * size, "indent")

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(str(value))

    def replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> None:
        _check_replace(str(value), str(old), str(new))

    guard("center", center)
    guard("indent", indent)
    guard("format", format_)
    guard("replace", replace)
    original_join = filters["join"]

    @functools.wraps(original_join)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        if attribute is not None:
            return original_join(eval_ctx, value, d, attribute)
        return original_join(eval_ctx, _bounded_join(str(d), value), d)

    filters["join"] = join


def _spend() -> None:
    """Count one loop iteration or call against the current render's budget."""
    remaining = _remaining.get(None)
    if remaining is not None:
        remaining[0] -= 1
        if remaining[0] < 0:
            raise _refuse(f"more than {MAX_STEPS} loop iterations and calls")


def _loop_budget(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, counting each item against the current render's budget."""
    for item in iterable:
        _spend()
        yield item


class _BudgetLoops(NodeTransformer):
    """Route every ``for`` loop's iterable through the loop budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_BUDGET_NAME, "load"), [node.iter], [], None, None)
        return node


class BoundedSandbox(SandboxedEnvironment):
    """A ``SandboxedEnvironment`` whose operators, calls, filters, loops and output are bounded."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals[_BUDGET_NAME] = _loop_budget
        _bounded_filters(self.filters)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _BudgetLoops().visit(super()._parse(source, name, filename))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(owner, str):
            if name == "join" and len(args) == 1 and not kwargs:
                return owner.join(_bounded_join(owner, args[0]))
            _check_str_method(owner, name, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    """Render ``template`` with a fresh budget of steps, refusing output longer than ``MAX_OUTPUT``."""
    token = _remaining.set([MAX_STEPS])
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise _refuse(f"output longer than {MAX_OUTPUT} characters")
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _remaining.reset(token)
