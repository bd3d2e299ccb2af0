"""Dependencies: simple `name [op evr]` atoms and rpm's rich (boolean)
dependencies such as `(foo or bar)` and `(a if b else c)`.

A rich dependency is stored as one name starting with `(` (that is how
primary.xml and the header carry it); parse_rich() turns it into a small
tree the resolver evaluates.
"""

from __future__ import annotations

from typing import NamedTuple

from rootfs.backends.rpm.version import EVR, OPERATORS, op_text, parse_evr
from rootfs.model.errors import ResolveError


class Dep(NamedTuple):
    # A tuple, not a dataclass: a distribution's primary.xml holds millions
    # of these, and a tuple is several times cheaper to make.
    name: str
    flags: int = 0  # LESS/GREATER/EQUAL bits only
    evr: EVR | None = None
    pre: bool = False  # Requires(pre) and friends: install order, not meaning

    def __str__(self) -> str:
        if self.flags and self.evr is not None:
            return f"{self.name} {op_text(self.flags)} {self.evr}"
        return self.name

    @property
    def is_rich(self) -> bool:
        return self.name.startswith("(")

    @property
    def is_rpmlib(self) -> bool:
        return self.name.startswith("rpmlib(")


# Rich trees: ("atom", Dep) | (op, left, right[, else]) for if/unless, with,
# without | ("and"|"or", [children]).
Rich = tuple

_BINARY = ("and", "or", "if", "unless", "with", "without")


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def error(self, why: str) -> ResolveError:
        return ResolveError(f"cannot parse the rich dependency {self.s!r}: {why}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def word(self) -> str:
        """A name or version: up to whitespace or an unbalanced `)`, keeping
        the parentheses of names such as `libfoo.so.1()(64bit)`."""
        start = self.i
        depth = 0
        while self.i < len(self.s):
            c = self.s[self.i]
            if c.isspace():
                break
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            self.i += 1
        return self.s[start:self.i]

    def operand(self) -> Rich:
        self.ws()
        if self.i < len(self.s) and self.s[self.i] == "(":
            return self.group()
        name = self.word()
        if not name:
            raise self.error("a name is missing")
        self.ws()
        save = self.i
        op = self.word()
        if op in OPERATORS:
            self.ws()
            ver = self.word()
            if not ver:
                raise self.error(f"{name} {op} lacks a version")
            return ("atom", Dep(name, OPERATORS[op], parse_evr(ver)))
        self.i = save
        return ("atom", Dep(name))

    def group(self) -> Rich:
        assert self.s[self.i] == "("
        self.i += 1
        first = self.operand()
        self.ws()
        if self.i < len(self.s) and self.s[self.i] == ")":
            self.i += 1
            return first
        op = self.word()
        if op not in _BINARY:
            raise self.error(f"unknown operator {op!r}")
        second = self.operand()
        self.ws()
        if op in ("and", "or"):
            children = [first, second]
            while True:
                self.ws()
                save = self.i
                nxt = self.word()
                if nxt == op:
                    children.append(self.operand())
                    continue
                if nxt in _BINARY:
                    raise self.error(f"mixing {op!r} and {nxt!r} needs parentheses")
                self.i = save
                break
            node: Rich = (op, children)
        elif op in ("if", "unless"):
            save = self.i
            nxt = self.word()
            if nxt == "else":
                node = (op, first, second, self.operand())
            else:
                self.i = save
                node = (op, first, second, None)
        else:
            node = (op, first, second)
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != ")":
            raise self.error("a closing parenthesis is missing")
        self.i += 1
        return node


def parse_rich(text: str) -> Rich:
    p = _Parser(text)
    node = p.group()
    p.ws()
    if p.i != len(p.s):
        raise p.error("text after the closing parenthesis")
    return node


def atoms(node: Rich) -> list[Dep]:
    """Every simple dependency named in a rich tree."""
    if node[0] == "atom":
        return [node[1]]
    if node[0] in ("and", "or"):
        return [d for c in node[1] for d in atoms(c)]
    return [d for c in node[1:] if c is not None for d in atoms(c)]


def parse_dep_string(text: str) -> Dep:
    """`name`, `name >= 1.0` or `(rich ...)`, as a user or a lock writes it."""
    text = text.strip()
    if text.startswith("("):
        parse_rich(text)  # validate now, evaluate later
        return Dep(text)
    parts = text.split()
    if len(parts) == 3 and parts[1] in OPERATORS:
        return Dep(parts[0], OPERATORS[parts[1]], parse_evr(parts[2]))
    if len(parts) == 1:
        return Dep(parts[0])
    raise ResolveError(f"cannot parse the dependency {text!r}")
