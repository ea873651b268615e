"""Mutation sites of a Rust function and the mutant schema that holds them all.

Sites are found with tree-sitter-rust. A *schema* is the function rewritten so that each
site reads `crate::__rtf_mutant()` (the `RTF_MUTANT` environment variable, read once) and
behaves as mutant K when it equals K and as the original otherwise; one build then serves
every mutant. `Mutant.apply` gives the same mutant as plain source (one build per mutant),
which is what the equivalence test compares against, and what survivor diffs show.

The mutated branch of a site is written from the *original* text of its operands: when
mutant K is active no other mutant is, so inner sites need not appear there, and the
schema grows linearly with the number of sites instead of doubling per nesting level.
Every mutant is wrapped in `/*<K*/ ... /*K>*/` markers so a compiler error can be traced to
the innermost mutant that contains it (that mutant is unviable and is dropped). A site with
several mutants (a body's typical values, an operator's alternatives) holds one marked switch
per mutant, so an error in one alternative drops only that one. The operators follow
cargo-mutants' genres; the return-type values are in mutation_values.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from tree_sitter import Node

from trainer.corpus import rust_ast

from .mutation_values import body_values

_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
# Each binary operator to its usual alternatives (cargo-mutants' genres), each comparison to every other one.
BINARY_SWAPS: dict[str, tuple[str, ...]] = {
    "+": ("-", "*"), "-": ("+", "/"), "*": ("+", "/"), "/": ("%", "*"), "%": ("/", "+"),
    "&&": ("||",), "||": ("&&",), "&": ("|", "^"), "|": ("&", "^"), "^": ("&", "|"), "<<": (">>",), ">>": ("<<",),
    **{op: tuple(o for o in _COMPARISONS if o != op) for op in _COMPARISONS}}
COMPOUND_SWAPS: dict[str, tuple[str, ...]] = {
    "+=": ("-=", "*="), "-=": ("+=", "/="), "*=": ("+=", "/="), "/=": ("%=", "*="), "%=": ("/=", "+="),
    "&=": ("|=", "^="), "|=": ("&=", "^="), "^=": ("&=", "|="), "<<=": (">>=",), ">>=": ("<<=",)}
UNARY_DELETIONS = ("-", "!")

HELPER = """#[doc(hidden)]
#[allow(dead_code)]
#[inline(never)]
pub fn __rtf_mutant() -> u32 {
    static ACTIVE: ::std::sync::OnceLock<u32> = ::std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| ::std::env::var("RTF_MUTANT").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}
"""
SWITCH = "crate::__rtf_mutant()"
ENV_VAR = "RTF_MUTANT"


@dataclass(frozen=True)
class Mutant:
    id: int             # the RTF_MUTANT value that activates it (1-based; 0 = original)
    operator: str       # body_value | body_default | binary_swap | compound_swap | unary_delete | guard_true | guard_false | arm_delete
    line: int           # 1-based line in the function code
    start: int          # byte range of the function code that the plain mutant replaces
    end: int
    replacement: str

    def apply(self, code: str) -> str:
        """The function code with only this mutation, as plain Rust."""
        data = code.encode()
        return (data[:self.start] + self.replacement.encode() + data[self.end:]).decode()

    def describe(self, code: str) -> str:
        original = code.encode()[self.start:self.end].decode()
        short = " ".join(original.split())
        return f"{self.operator} line {self.line}: `{short[:60]}` -> `{' '.join(self.replacement.split())[:60]}`"

    def diff(self, code: str) -> str:
        """Unified diff of the function against this mutant (what a survivor looks like)."""
        lines = difflib.unified_diff(code.splitlines(), self.apply(code).splitlines(), "function", f"mutant {self.id}",
                                     lineterm="", n=0)
        return "\n".join(lines)


@dataclass
class _Site:
    kind: str
    node: Node
    mutants: list[Mutant]


def _text(data: bytes, node: Node) -> str:
    return data[node.start_byte:node.end_byte].decode()


def _operator(node: Node) -> Node | None:
    op = node.child_by_field_name("operator")
    if op is None and node.type == "unary_expression" and node.children:
        op = node.children[0]
    return op


def _is_const(fn: Node) -> bool:
    return any(c.type == "function_modifiers" and "const" in rust_ast.text(c).split() for c in fn.children)


def _is_wildcard_arm(arm: Node) -> bool:
    pat = arm.child_by_field_name("pattern")
    return pat is not None and rust_ast.text(pat).strip() == "_"


def find_sites(code: str, tree=None) -> tuple[list[_Site], list[str]]:
    """Mutation sites in every non-const function of `code`, in source order, with notes."""
    data = code.encode()
    tree = tree if tree is not None else rust_ast.parse(data)
    notes: list[str] = []
    found: list[tuple[int, str, Node, list[tuple[str, int, int, str]]]] = []  # (pos, kind, node, [(op, start, end, repl)])
    bodies = []
    for fn in rust_ast.function_items(tree):
        body = fn.child_by_field_name("body")
        if body is None:
            continue
        if _is_const(fn):
            notes.append(f"const fn {rust_ast.function_name(fn)} not mutated (a runtime switch cannot run in const context)")
            continue
        bodies.append(body)
        specs = _body_specs(data, body, fn.child_by_field_name("return_type"))
        if specs:
            found.append((body.start_byte, "body", body, specs))
    seen: set[int] = set()
    for body in bodies:
        for node in rust_ast.walk(body):
            if node.id in seen:
                continue
            seen.add(node.id)
            kind = node.type
            if kind == "function_item" and node.child_by_field_name("body") not in bodies:
                continue
            if kind in ("binary_expression", "compound_assignment_expr"):
                op = _operator(node)
                table = BINARY_SWAPS if kind == "binary_expression" else COMPOUND_SWAPS
                if op is not None and op.type in table:
                    name = "binary_swap" if kind == "binary_expression" else "compound_swap"
                    found.append((node.start_byte, kind, node,
                                  [(name, op.start_byte, op.end_byte, alt) for alt in table[op.type]]))
            elif kind == "unary_expression":
                op = _operator(node)
                if op is not None and op.type in UNARY_DELETIONS:
                    found.append((node.start_byte, kind, node, [("unary_delete", op.start_byte, op.end_byte, "")]))
            elif kind == "match_pattern":
                cond = node.child_by_field_name("condition")
                if cond is not None and cond.type not in ("let_condition", "let_chain"):
                    found.append((cond.start_byte, "guard", cond,
                                  [("guard_true", cond.start_byte, cond.end_byte, "true"),
                                   ("guard_false", cond.start_byte, cond.end_byte, "false")]))
            elif kind == "match_block":
                arms = [c for c in node.named_children if c.type == "match_arm"]
                if any(_is_wildcard_arm(a) for a in arms):
                    for arm in arms:
                        pat = arm.child_by_field_name("pattern")
                        if not _is_wildcard_arm(arm) and pat is not None:
                            found.append((arm.start_byte, "arm", pat, [("arm_delete", arm.start_byte, arm.end_byte, "")]))
    found.sort(key=lambda f: (f[0], f[1] != "body"))
    sites: list[_Site] = []
    next_id = 1
    for _pos, kind, node, specs in found:
        muts = []
        for op, start, end, repl in specs:
            line = data[:start].count(b"\n") + 1
            muts.append(Mutant(next_id, op, line, start, end, repl))
            next_id += 1
        sites.append(_Site(kind, node, muts))
    return sites, notes


def _body_specs(data: bytes, body: Node, ret: Node | None) -> list[tuple[str, int, int, str]]:
    """The body replaced by each typical value of the return type; a value equal to the original body is skipped."""
    if ret is not None and rust_ast.text(ret).strip() == "()":
        ret = None
    found = body_values(ret)
    if not found:
        return []
    original = " ".join(_text(data, body)[1:-1].split())
    if ret is None:  # `()`: the empty body, unless the body is already empty
        return [] if not original else [("body_default", body.start_byte, body.end_byte, "{}")]
    return [("body_default" if v == "Default::default()" else "body_value", body.start_byte, body.end_byte, f"{{ {v} }}")
            for v in found if " ".join(v.split()) != original]


def find_mutants(code: str) -> list[Mutant]:
    return [m for site in find_sites(code)[0] for m in site.mutants]


def render_schema(code: str, active: set[int] | None = None) -> str:
    """The function code with every active mutant switched in (None = all mutants)."""
    data = code.encode()
    tree = rust_ast.parse(data)
    sites, _ = find_sites(code, tree)
    by_node: dict[int, list[_Site]] = {}
    for site in sites:
        kept = [m for m in site.mutants if active is None or m.id in active]
        if kept:
            by_node.setdefault(site.node.id, []).append(_Site(site.kind, site.node, kept))

    def plain(node: Node) -> str:
        out, pos = [], node.start_byte
        for child in node.children:
            out.append(data[pos:child.start_byte].decode())
            out.append(render(child))
            pos = child.end_byte
        out.append(data[pos:node.end_byte].decode())
        return "".join(out)

    def render(node: Node) -> str:
        text = plain(node)
        for site in by_node.get(node.id, []):
            text = _wrap(site, node, text, data)
        return text

    return render(tree.root_node) if by_node else code


def _mark(k: int, text: str) -> str:
    return f"/*<{k}*/{text}/*{k}>*/"


def _wrap(site: _Site, node: Node, rendered: str, data: bytes) -> str:
    """Wrap one site's rendered text in its runtime switches."""
    m = site.mutants
    if site.kind == "body":
        # one early return per value, each its own statement: a value that does not type-check errors inside its markers
        inner = rendered[1:]  # after the body's `{`
        checks = "".join(_mark(mut.id, f" if {SWITCH} == {mut.id} {{ return{_body_value(mut)}; }}") for mut in m)
        return "{" + checks + inner
    if site.kind in ("binary_expression", "compound_assignment_expr", "unary_expression"):
        alternatives = []
        for mut in m:
            mutated = (data[node.start_byte:mut.start].decode() + mut.replacement + data[mut.end:node.end_byte].decode())
            alternatives.append((mut.id, "(" + mutated + ")" if site.kind == "unary_expression" else mutated))
        if len(alternatives) == 1:
            k, mutated = alternatives[0]
            return _mark(k, f"(if {SWITCH} == {k} {{ {mutated} }} else {{ {rendered} }})")
        return _switch(alternatives, rendered)
    if site.kind == "guard":
        text = rendered
        for mut in reversed(m):
            text = _mark(mut.id, f"(if {SWITCH} == {mut.id} {{ {mut.replacement} }} else {{ {text} }})")
        return text
    if site.kind == "arm":
        k = m[0].id
        cond = node.child_by_field_name("condition")
        if cond is None:
            return rendered + _mark(k, f" if {SWITCH} != {k}")
        head, _, guard = rendered.partition(" if ")
        if not _:
            head, _, guard = rendered.partition("if")
        return head + " if " + _mark(k, f"{SWITCH} != {k} && ") + "(" + guard.strip() + ")"
    raise ValueError(site.kind)


def _body_value(mut: Mutant) -> str:
    value = mut.replacement.strip()[1:-1].strip()  # `{ v }` -> `v`; `{}` -> `` (a bare `return;`)
    return f" {value}" if value else ""


def _switch(alternatives: list[tuple[int, str]], rendered: str) -> str:
    """A site with several mutants: one `match` on the switch whose *first* arm is the original, so the original
    fixes the site's type and an alternative of another type errors inside its own markers (and only it is dropped)."""
    ids = " && ".join(f"__rtf_k != {k}" for k, _ in alternatives)
    arms = " ".join(_mark(k, f"{k} => {{ {mutated} }}") for k, mutated in alternatives[:-1])
    last_k, last = alternatives[-1]
    arms += " " + _mark(last_k, f"_ => {{ {last} }}")
    return f"(match {SWITCH} {{ __rtf_k if {ids} => {{ {rendered} }} {arms} }})"


_MARKER = re.compile(r"/\*<(\d+)\*/|/\*(\d+)>\*/")


def marker_intervals(source: str) -> list[tuple[int, int, int]]:
    """(start byte, end byte, mutant id) of every marked site in `source`."""
    data = source.encode()
    stack: list[tuple[int, int]] = []
    out: list[tuple[int, int, int]] = []
    for m in _MARKER.finditer(data.decode()):
        pos = len(data.decode()[:m.start()].encode())
        if m.group(1):
            stack.append((int(m.group(1)), pos))
        elif stack and stack[-1][0] == int(m.group(2)):
            k, start = stack.pop()
            out.append((start, pos + len(m.group(0)), k))
    return out


def innermost_mutant(intervals: list[tuple[int, int, int]], offset: int) -> int | None:
    """The mutant whose marked site most tightly encloses byte `offset`, if any."""
    best = None
    for start, end, k in intervals:
        if start <= offset < end and (best is None or end - start < best[1] - best[0]):
            best = (start, end, k)
    return best[2] if best else None
