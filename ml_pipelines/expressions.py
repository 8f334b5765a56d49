"""Derived-feature expressions (`features.derived[].expr`): column names, numbers,
arithmetic, comparisons, boolean logic and a few math functions, nothing else.

`check_expression` runs when the spec loads; `evaluate_expression` checks again and
then computes with pandas' own `DataFrame.eval`, so the values are pandas'. The check
is ours, a whitelist over Python's `ast`, because `DataFrame.eval` has no safe mode: it
allows attribute access and method calls (`a.to_csv('x')` writes a file) and `@name`
lookups of the caller's variables.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec imports this module; it needs no pandas to check an expression
    import pandas as pd

# a subset of the math functions DataFrame.eval itself provides
FUNCTIONS = frozenset(
    {"abs", "ceil", "cos", "exp", "expm1", "floor", "log", "log10", "log1p", "sin", "sqrt", "tan", "tanh"}
)
OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,  # arithmetic
    ast.BitAnd, ast.BitOr,  # pandas' element-wise and / or
    ast.UAdd, ast.USub, ast.Not, ast.Invert,  # unary; ~ is pandas' element-wise not
    ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
)
ALLOWED = (
    "column names, numbers, strings, True/False, + - * / // % **, comparisons "
    "(== != < <= > >= in, not in [...]), and/or/not (& | ~) and the functions " + ", ".join(sorted(FUNCTIONS))
)


class ExpressionError(ValueError):
    """An expression is not valid Python or uses something outside the allowed subset."""


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        return f"a call to {name}()"
    return {ast.Subscript: "indexing ([...])", ast.Lambda: "lambda"}.get(type(node), type(node).__name__)


def _refuse(expr: str, what: str) -> ExpressionError:
    return ExpressionError(f"expression {expr!r} uses {what}; allowed: {ALLOWED}")


def _check_node(expr: str, node: ast.AST, called: set[int]) -> None:
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords or not node.args:
            raise _refuse(expr, _describe(node))
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise _refuse(expr, "*arguments")
        called.add(id(node.func))
    elif isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise _refuse(expr, f"the name {node.id}")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str)) or isinstance(node.value, complex):
            raise _refuse(expr, f"the constant {node.value!r}")
    elif isinstance(node, (ast.List, ast.Tuple)):
        if not all(isinstance(e, ast.Constant) for e in node.elts):
            raise _refuse(expr, "a list of anything but constants")
    elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Load, *OPERATORS)):
        raise _refuse(expr, _describe(node))


def _parse(expr: str) -> ast.Expression:
    try:
        return ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        raise ExpressionError(f"expression {expr!r} is not valid: {reason}") from None


def check_expression(expr: str) -> list[str]:
    """The column names `expr` reads, in order of appearance; ExpressionError if it is not
    valid Python or uses anything outside the allowed subset."""
    tree = _parse(expr)
    called: set[int] = set()
    # ast.walk is breadth-first: a Call is seen before the Name it calls
    for node in ast.walk(tree):
        _check_node(expr, node, called)
    ordered = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called),
        key=lambda n: (n.lineno, n.col_offset),
    )
    return list(dict.fromkeys(n.id for n in ordered))


def evaluate_expression(expr: str, frame: pd.DataFrame) -> pd.Series:
    """`expr` over `frame`'s columns, by DataFrame.eval, after the check; a name that is not a
    column is an error (DataFrame.eval would otherwise look it up among Python variables)."""
    columns = check_expression(expr)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ExpressionError(f"expression {expr!r} reads column {missing[0]!r}, which the data does not have")
    return frame.eval(expr.strip(), engine="python", parser="pandas", local_dict={}, global_dict={})
