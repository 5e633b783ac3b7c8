"""Every method's declared params are exactly the params its handler reads, and ``server.schema``
is generated from that declaration.

How the reads are found: the handler's source is walked (``ast``), following the params object
into every function it is handed to (helpers such as ``req_str(p, "name")``, parsers such as
``parse_policy(p)``, services such as ``svc.chats.start(s, targets, p)``), and every key read
from it (``p.get("k")``, ``p["k"]``, ``"k" in p``, a helper's key argument) is collected. A
handler that hands its params somewhere this walk cannot follow fails the test, so a new
forwarding path cannot hide a param.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from carnb.app.approvals import ApprovalLedger
from carnb.app.chat import ChatRelay
from carnb.app.handlers.catalog import CATALOG
from carnb.app.methods import Method
from carnb.app.models import ModelHub
from carnb.runs import RunStore

# Calls on services that the walk cannot resolve from a name alone: what they are.
SERVICE_CALLS: dict[str, Callable[..., Any]] = {
    "svc.models.infer": ModelHub.infer,
    "svc.models.embed": ModelHub.embed,
    "svc.chats.start": ChatRelay.start,
    "svc.chats.event": ChatRelay.event,
    "svc.chats.approve": ChatRelay.approve,
    "_ledger(svc).request": ApprovalLedger.request,
    "_ledger(svc).resolve": ApprovalLedger.resolve,
    "_store(svc).record_model_turn": RunStore.record_model_turn,
}
# Functions that take the params object without reading keys from it.
NOT_READING = {"isinstance", "len", "dict", "type", "id"}
ALL = "*"  # the handler reads every key (it relays the params it was not given a meaning for)


@dataclass
class Reads:
    keys: set[str] = field(default_factory=set)
    unfollowed: set[str] = field(default_factory=set)


def _source_tree(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    return node


class Walk:
    def __init__(self) -> None:
        self.reads = Reads()
        self._seen: set[tuple[object, frozenset[str], tuple[tuple[str, frozenset[str]], ...]]] = (
            set()
        )

    def function(
        self,
        fn: Callable[..., Any],
        pvars: set[str],
        keyvars: dict[str, set[str]],
    ) -> None:
        fn = inspect.unwrap(fn)
        key = (fn, frozenset(pvars), tuple(sorted((k, frozenset(v)) for k, v in keyvars.items())))
        if key in self._seen:
            return
        self._seen.add(key)
        node = _source_tree(fn)
        self.body(node, fn, set(pvars), dict(keyvars), {})

    def body(
        self,
        node: ast.AST,
        fn: Callable[..., Any],
        pvars: set[str],
        keyvars: dict[str, set[str]],
        nested: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
    ) -> None:
        for child in ast.walk(node):
            if child is not node and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                nested[child.name] = child
        for child, _ in _walk(node):
            self._aliases(child, pvars, keyvars)
        for child, own in _walk(node):
            # a nested function's own arguments are followed where it is called
            self._read(child, fn, pvars, {**keyvars, **dict.fromkeys(own, set())}, nested)

    def _keys(self, expr: ast.AST, keyvars: dict[str, set[str]]) -> set[str] | None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.Name) and expr.id in keyvars:
            return keyvars[expr.id]
        return None

    def _is_p(self, expr: ast.AST, pvars: set[str]) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in pvars
        # dict(p), p.copy() and {**p} are the same params
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Name)
            and expr.func.id == "dict"
        ):
            return len(expr.args) == 1 and self._is_p(expr.args[0], pvars)
        return False

    def _aliases(self, node: ast.AST, pvars: set[str], keyvars: dict[str, set[str]]) -> None:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and self._is_p(node.value, pvars):
                pvars.add(target.id)
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Tuple | ast.List)
        ):
            values = [self._keys(e, keyvars) for e in node.iter.elts]
            if values and all(v is not None for v in values):
                keyvars[node.target.id] = set().union(*[v for v in values if v])

    def _read(
        self,
        node: ast.AST,
        fn: Callable[..., Any],
        pvars: set[str],
        keyvars: dict[str, set[str]],
        nested: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
    ) -> None:
        if (
            isinstance(node, ast.Return)
            and node.value is not None
            and self._is_p(node.value, pvars)
        ):
            self.reads.keys.add(ALL)  # the params go on whole (to a model, say)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if self._is_p(node.value, pvars):
                self._add(self._keys(node.slice, keyvars), node)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            if isinstance(node.ops[0], ast.In | ast.NotIn) and self._is_p(
                node.comparators[0], pvars
            ):
                self._add(self._keys(node.left, keyvars), node)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and self._is_p(func.value, pvars):
                if func.attr in ("get", "pop") and node.args:
                    self._add(self._keys(node.args[0], keyvars), node)
                elif func.attr in ("items", "keys", "values"):
                    self.reads.keys.add(ALL)
                return
            self._call(node, fn, pvars, keyvars, nested)

    def _add(self, keys: set[str] | None, node: ast.AST) -> None:
        if keys is None:
            self.reads.unfollowed.add(f"a key computed at line {getattr(node, 'lineno', '?')}")
        else:
            self.reads.keys |= keys

    def _call(
        self,
        node: ast.Call,
        fn: Callable[..., Any],
        pvars: set[str],
        keyvars: dict[str, set[str]],
        nested: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
    ) -> None:
        passed = [i for i, a in enumerate(node.args) if self._is_p(a, pvars)]
        passed_kw = [k.arg for k in node.keywords if k.arg and self._is_p(k.value, pvars)]
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None and self._is_p(k.value, pvars) for k in node.keywords
        ):
            self.reads.keys.add(ALL)
        nested_call = isinstance(node.func, ast.Name) and node.func.id in nested
        if not passed and not passed_kw and not nested_call:  # a closure reads the params too
            return
        name = ast.unparse(node.func)
        if name in NOT_READING:
            return
        if isinstance(node.func, ast.Name) and node.func.id in nested:
            target = nested[node.func.id]
            params = [a.arg for a in target.args.args]
            inner_p = set(pvars) | {params[i] for i in passed if i < len(params)}
            inner_keys = dict(keyvars)
            for i, arg in enumerate(node.args):
                keys = self._keys(arg, keyvars)
                if keys is not None and i < len(params):
                    inner_keys[params[i]] = keys
            self.body(target, fn, inner_p, inner_keys, dict(nested))
            return
        callee = self._resolve(name, fn)
        if callee is None:
            self.reads.unfollowed.add(f"{name}(...) in {fn.__qualname__}")
            return
        params = list(inspect.signature(callee).parameters)
        if params and params[0] == "self" and (name in SERVICE_CALLS or name.startswith("self.")):
            params = params[1:]  # called on an instance: self is bound
        inner_p = {params[i] for i in passed if i < len(params)} | set(passed_kw)
        inner_keys: dict[str, set[str]] = {}
        for i, arg in enumerate(node.args):
            keys = self._keys(arg, keyvars)
            if keys is not None and i < len(params):
                inner_keys[params[i]] = keys
        for kw in node.keywords:
            keys = self._keys(kw.value, keyvars)
            if kw.arg and keys is not None:
                inner_keys[kw.arg] = keys
        self.function(callee, inner_p, inner_keys)

    @staticmethod
    def _resolve(name: str, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        if name in SERVICE_CALLS:
            return SERVICE_CALLS[name]
        scope = inspect.unwrap(fn).__globals__
        head, _, rest = name.partition(".")
        if head == "self":  # a method of the class fn belongs to
            owner = scope.get(fn.__qualname__.split(".")[0])
            value = getattr(owner, rest, None) if owner is not None else None
        else:
            value = scope.get(head)
            for part in rest.split(".") if rest else []:
                value = getattr(value, part, None)
        if inspect.isfunction(value) or inspect.ismethod(value):
            return value
        return None


def _walk(node: ast.AST, own: frozenset[str] = frozenset()) -> list[tuple[ast.AST, frozenset[str]]]:
    """Every node under ``node`` with the argument names of the nested functions around it."""
    out: list[tuple[ast.AST, frozenset[str]]] = [(node, own)]
    for child in ast.iter_child_nodes(node):
        inner = own
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = own | {a.arg for a in child.args.args}
        out.extend(_walk(child, inner))
    return out


def reads_of(method: Method) -> Reads:
    walk = Walk()
    handler = inspect.unwrap(method.fn)
    params = list(inspect.signature(handler).parameters)
    walk.function(handler, {params[1]}, {})
    if method.array_params is not None:  # the array form arrives under this name
        walk.reads.keys.add(method.array_params)
    return walk.reads


@pytest.mark.parametrize("method", CATALOG, ids=[m.name for m in CATALOG])
def test_declared_params_are_what_the_handler_reads(method: Method) -> None:
    reads = reads_of(method)
    assert not reads.unfollowed, f"{method.name}: params handed where the walk cannot follow"
    declared = set(method.params)
    if ALL in reads.keys:  # it hands its params on whole: each key it reads itself is declared
        read = reads.keys - {ALL}
        assert read <= declared, f"{method.name}: read but not declared {sorted(read - declared)}"
        return
    assert reads.keys == declared, (
        f"{method.name}: read but not declared {sorted(reads.keys - declared)}, "
        f"declared but not read {sorted(declared - reads.keys)}"
    )


def test_server_schema_is_generated_from_the_declaration(connect_client) -> None:
    schema = connect_client().call("server.schema")
    by_name = {m.name: m for m in CATALOG}
    assert schema["methods"], schema
    for entry in schema["methods"]:
        method = by_name[entry["method"]]
        assert entry == method.describe()
        assert entry["params"] == dict(method.params)
