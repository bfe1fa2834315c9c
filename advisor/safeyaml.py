"""Reading YAML that users write (the answers file, plan.yaml): safe, bounded, unambiguous.

`yaml.safe_load` already refuses tags that run code. On top of it:
- a key given twice in one mapping is an error (PyYAML keeps the last one silently, so
  `method: lora` ... `method: full` trained with `full` while the reader saw `lora`);
- an alias bomb (anchors referenced by anchors, 9 levels of 9) is refused by counting the nodes
  the document would expand to, on the composed graph, before anything is built from it;
- an integer of more than 4,300 digits (Python's conversion limit) is a message, not a traceback;
- nesting deeper than the recursion limit is a message too.
Every problem is a `UserError` naming the file, the place and the fix.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from advisor.errors import UserError

MAX_NODES = 200_000  # an answers file has ~20 nodes, a plan ~200; a bomb has billions


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then an override is fine
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not None:
                raise _Duplicate(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class _Duplicate(Exception):
    def __init__(self, key, first, mark):
        super().__init__(key)
        self.key, self.first, self.mark = key, first, mark


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document expands to (aliases counted each time they are used), capped past MAX_NODES."""
    memo: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo:
            continue
        children = (
            [c for pair in node.value for c in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if done:
            memo[id(node)] = min(MAX_NODES + 1, 1 + sum(memo.get(id(c), 1) for c in children))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in memo)
    return memo.get(id(root), 1)


def load_yaml(text: str, source: str | Path, *, what: str = "a file", fix: str) -> object:
    """Parse `text` (from `source`); any problem is a `UserError` with `fix` as its fix line."""
    loader = None
    try:
        loader = _Loader(text)  # the reader already refuses control characters (a NUL byte)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise UserError(
                f"{source}: expands to more than {MAX_NODES:,} values through YAML aliases (&/*), "
                f"too many for {what}",
                "write the values out instead of aliasing them",
            )
        return loader.construct_document(node)
    except _Duplicate as e:
        raise UserError(
            f"{source}: key {str(e.key)[:60]!r} is given twice (lines {e.first.line + 1} and "
            f"{e.mark.line + 1}); YAML would silently keep the last one",
            "keep one of them",
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{source}: not valid YAML{where}", fix) from None
    except RecursionError:  # PyYAML composes and constructs nodes recursively
        raise UserError(f"{source}: nested too deeply to be {what}", fix) from None
    except ValueError as e:  # int('1' * 5000): Python refuses to convert more than 4,300 digits
        raise UserError(
            f"{source}: a value cannot be read ({str(e).splitlines()[0][:120]})",
            "use a number of sensible size (no value here needs more than a few digits)",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
