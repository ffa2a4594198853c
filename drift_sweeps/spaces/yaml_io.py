"""Bounded YAML for space files and `--set` values: size, UTF-8 text, nesting depth, alias expansion, and
string keys given once (no merge keys)."""

from __future__ import annotations

from typing import Any

import yaml

from .parts import MAX_YAML_DEPTH, MAX_YAML_NODES, SpaceError, _short


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when available (20x faster)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """yaml.SafeLoader whose mappings must have string keys, each once (no merge keys)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            where = f"line {key_node.start_mark.line + 1}"
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpaceError(f"{where}: merge keys ('<<') are not supported; write the keys out")
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                raise SpaceError(f"{where}: key {_short(shown)} is not a string; every key is a name like 'k_max'")
            if key_node.value in seen:
                raise SpaceError(f"{where}: duplicate key {_short(key_node.value)} (YAML would silently keep the "
                                 "last value); give each key once")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a PyYAML error: where, then what."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def load_yaml(data: bytes | str, source: str, max_bytes: int) -> Any:
    """Parse YAML text with bounds: size, UTF-8 text, nesting depth, alias expansion, string keys once."""
    if isinstance(data, str):
        text = data
        if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise SpaceError(f"{source}: more than {max_bytes} bytes of YAML; allowed: at most {max_bytes}")
    else:
        if len(data) > max_bytes:
            raise SpaceError(f"{source}: {len(data)} bytes; allowed: at most {max_bytes}")
        if b"\x00" in data:
            raise SpaceError(f"{source}: a binary file (it holds NUL bytes), not YAML text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpaceError(f"{source}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                             "save it as UTF-8") from None
    text = text.removeprefix("\ufeff")
    try:
        depth, events = 0, 0
        for event in yaml.parse(text, Loader=_BaseLoader):  # event stream: no recursion, bounded depth
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise SpaceError(f"{source}: line {event.start_mark.line + 1}: lists/mappings nested deeper "
                                     f"than {MAX_YAML_DEPTH} levels; a search space needs a few")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            events += 1
            if events > 4 * MAX_YAML_NODES:
                raise SpaceError(f"{source}: more than {MAX_YAML_NODES} values; allowed: at most {MAX_YAML_NODES}")
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, {}, set(), source)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise SpaceError(f"{source}: not valid YAML: {_yaml_problem(err)}") from None
    except SpaceError as err:
        raise SpaceError(str(err) if str(err).startswith(source) else f"{source}: {err}") from None
    except RecursionError:
        raise SpaceError(f"{source}: nested too deeply; allowed: {MAX_YAML_DEPTH} levels") from None


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], source: str) -> int:
    """Values a node stands for once every alias is expanded (memoised: a 300-byte bomb costs ~30 steps)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise SpaceError(f"{source}: line {node.start_mark.line + 1}: an alias refers to itself (a recursive "
                         "structure)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo, active, source) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo, active, source) + _expanded_size(v, memo, active, source)
                    for k, v in node.value)
    else:
        n = 1
    active.discard(key)
    if n > MAX_YAML_NODES:
        raise SpaceError(f"{source}: line {node.start_mark.line + 1}: the aliases (*anchor) here expand to more "
                         f"than {MAX_YAML_NODES} values; allowed: at most {MAX_YAML_NODES}")
    memo[key] = n
    return n
