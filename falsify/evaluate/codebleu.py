"""BLEU-4 (sacrebleu) and CodeBLEU for Rust (Ren et al. 2020), written here.

Why our own CodeBLEU: the `codebleu` package pins tree-sitter<0.23 (incompatible with
tree-sitter-rust 0.24) and scores a dataflow match as full marks when the reference has
no dataflow. The four components, 0.25 each, follow the paper:
- ngram: BLEU-4 on code tokens (tree-sitter leaves), via sacrebleu;
- weighted ngram: BLEU-4 whose unigram counts weigh Rust keywords 1.0 and other tokens 0.2;
- syntax: share of the reference's AST subtrees (node-type shapes, identifiers and
  literals abstracted) found in the candidate;
- dataflow: share of the reference's def-use edges (`x comes from y`, variables renamed
  by order of first appearance) found in the candidate.
When the reference has no dataflow edge, the dataflow component is undefined: it is left
out and the other three are reweighted to 1/3 each (not scored as 1, not scored as 0);
the record's `codebleu_components` shows which components were used.
"""

from __future__ import annotations

import math
from collections import Counter

import sacrebleu
from tree_sitter import Node

from trainer.corpus import rust_ast

RUST_KEYWORDS = {
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while",
    # test vocabulary that carries meaning the way keywords do in tests
    "assert", "assert_eq", "assert_ne", "prop_assert", "prop_assert_eq", "prop_assert_ne", "proptest", "test",
}
_COMMENTS = ("line_comment", "block_comment")


def tokens(code: str) -> list[str]:
    root = rust_ast.parse(code).root_node
    return [rust_ast.text(n) for n in rust_ast.walk(root)
            if (n.child_count == 0 or n.type in ("string_literal", "char_literal")) and n.type not in _COMMENTS
            and not (n.parent is not None and n.parent.type in ("string_literal", "char_literal"))
            and rust_ast.text(n).strip()]


def bleu4(candidate: str, reference: str) -> float:
    """Sentence BLEU-4 in [0, 1] on code tokens (sacrebleu, exponential smoothing)."""
    hyp, ref = " ".join(tokens(candidate)), " ".join(tokens(reference))
    return min(1.0, sacrebleu.sentence_bleu(hyp, [ref], tokenize="none").score / 100.0)


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def weighted_bleu4(candidate: str, reference: str) -> float:
    """BLEU-4 where each unigram counts with its keyword weight (1.0 keyword, 0.2 other)."""
    cand, ref = tokens(candidate), tokens(reference)
    if not cand or not ref:
        return 0.0
    weight = lambda t: 1.0 if t in RUST_KEYWORDS else 0.2
    logs = []
    for n in range(1, 5):
        c, r = _ngrams(cand, n), _ngrams(ref, n)
        if n == 1:
            match = sum(weight(g[0]) * min(k, r[g]) for g, k in c.items())
            total = sum(weight(g[0]) * k for g, k in c.items())
        else:
            match = sum(min(k, r[g]) for g, k in c.items())
            total = sum(c.values())
        if total == 0:
            return 0.0
        logs.append(math.log(max(match, 1e-9) / total) if match else math.log(1e-9 / total))
    bp = 1.0 if len(cand) > len(ref) else math.exp(1 - len(ref) / len(cand))
    return bp * math.exp(sum(logs) / 4)


def _shape(node: Node) -> str:
    """S-expression of node types only (leaves' text abstracted), as CodeBLEU's syntax match."""
    named = [c for c in node.named_children if c.type not in _COMMENTS]
    if not named:
        return node.type
    return "(" + node.type + " " + " ".join(_shape(c) for c in named) + ")"


def syntax_match(candidate: str, reference: str) -> float:
    ref_trees = [_shape(n) for n in rust_ast.walk(rust_ast.parse(reference).root_node) if n.named_child_count]
    if not ref_trees:
        return 0.0
    cand = Counter(_shape(n) for n in rust_ast.walk(rust_ast.parse(candidate).root_node) if n.named_child_count)
    hits = 0
    for t in ref_trees:
        if cand[t] > 0:
            cand[t] -= 1
            hits += 1
    return hits / len(ref_trees)


def _identifiers(node: Node | None) -> list[str]:
    if node is None:
        return []
    return [rust_ast.text(n) for n in rust_ast.walk(node) if n.type == "identifier"]


def dataflow(code: str) -> list[tuple[str, str]]:
    """Def-use edges (target var, source var) from lets, assignments and for loops, renamed."""
    edges: list[tuple[str, str]] = []
    for node in rust_ast.walk(rust_ast.parse(code).root_node):
        if node.type == "let_declaration":
            targets, sources = _identifiers(node.child_by_field_name("pattern")), _identifiers(node.child_by_field_name("value"))
        elif node.type in ("assignment_expression", "compound_assignment_expr"):
            targets, sources = _identifiers(node.child_by_field_name("left")), _identifiers(node.child_by_field_name("right"))
        elif node.type == "for_expression":
            targets, sources = _identifiers(node.child_by_field_name("pattern")), _identifiers(node.child_by_field_name("value"))
        else:
            continue
        edges += [(t, s) for t in targets for s in sources]
    names: dict[str, str] = {}
    for t, s in edges:
        for v in (t, s):
            names.setdefault(v, f"var_{len(names)}")
    return [(names[t], names[s]) for t, s in edges]


def dataflow_match(candidate: str, reference: str) -> float | None:
    ref = Counter(dataflow(reference))
    if not ref:
        return None
    cand = Counter(dataflow(candidate))
    return sum(min(k, cand[e]) for e, k in ref.items()) / sum(ref.values())


def codebleu(candidate: str, reference: str) -> tuple[float, dict]:
    """CodeBLEU and its components; dataflow is None (and dropped) when the reference has none."""
    parts = {"ngram": bleu4(candidate, reference), "weighted_ngram": weighted_bleu4(candidate, reference),
             "syntax": syntax_match(candidate, reference), "dataflow": dataflow_match(candidate, reference)}
    used = [v for v in parts.values() if v is not None]
    return sum(used) / len(used), parts
