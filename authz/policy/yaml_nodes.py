"""Reading a policy YAML file into a pydantic model, with the file and line of every error.

Each format (policy files, routes, test suites) is described by pydantic models; this
module is the one place that reads YAML, remembers the line of every key and item by its
path, and turns pydantic's error locations (`loc`) into `file:line: reason`.

Every format is a mapping of sections whose values are collections of entries (roles,
types, routes, principals, tests). An error inside an entry drops that entry, an error in
a section drops the section, so the caller's checks of what remains still report their
own mistakes in the same run, as an admin would want.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
"""A path into a YAML document: mapping keys and list indexes, as in pydantic's `loc`."""

ANY = "*"  # in a `Places` pattern: any key or index


@dataclass(frozen=True)
class PolicyError:
    """One mistake in a policy file: where it is and a one-line reason."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class PolicyInvalid(Exception):
    """A policy directory failed validation; carries every error found."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class PolicyModel(BaseModel):
    """A part of a policy format: YAML types as written (no coercion), no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_one_or_many)]
"""A list of names; a single name stands for a list of one."""


def refuse(reason: str) -> PydanticCustomError:
    """The error a model's own check raises; `reason` is shown as written (it may hold braces)."""
    return PydanticCustomError("policy", "{reason}", {"reason": reason})


@dataclass(frozen=True)
class Places:
    """What the locations of one format are called in messages, and which model holds their keys.

    `names` maps a pattern (a loc with `ANY` for any key or index) to a phrase formatted with
    the loc's parts (`"type {1!r}"` for `("types", "billing")`) and the model found there.
    A loc without a pattern is called by its last key.
    """

    root: str
    root_model: type[BaseModel]
    names: Mapping[Loc, tuple[str, type[BaseModel] | None]]

    def _entry(self, loc: Loc) -> tuple[str, type[BaseModel] | None] | None:
        for pattern, entry in self.names.items():
            if len(pattern) == len(loc) and all(p in (ANY, part) for p, part in zip(pattern, loc, strict=True)):
                return entry
        return None

    def phrase(self, loc: Loc) -> str:
        if not loc:
            return self.root
        entry = self._entry(loc)
        if entry is not None:
            return entry[0].format(*loc)
        return f"an entry of {self.phrase(loc[:-1])}" if isinstance(loc[-1], int) else str(loc[-1])

    def expected(self, loc: Loc) -> str:
        """` (expected a, b)`: the keys of the model at `loc`, to follow an unknown one."""
        entry = self._entry(loc)
        model = self.root_model if not loc else entry[1] if entry is not None else None
        return f" (expected {', '.join(model.model_fields)})" if model is not None else ""


@dataclass
class YamlFile:
    """One YAML file as plain data, with the (key line, value line) of every key and item by its path."""

    file: str
    data: Any
    lines: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def line(self, loc: Loc, *, of_key: bool = False) -> int:
        """The line of `loc`'s key (or value); a loc that is not in the file (a missing key) → its parent's."""
        while loc not in self.lines and loc:
            loc = loc[:-1]
        key_line, value_line = self.lines.get(loc, (1, 1))
        return key_line if of_key else value_line


class Report:
    """The errors found so far, each with file and line."""

    def __init__(self) -> None:
        self.errors: list[PolicyError] = []

    def add(self, file: str, line: int, reason: str) -> None:
        self.errors.append(PolicyError(file, line, reason))

    def at(self, source: YamlFile, loc: Loc, reason: str, *, of_key: bool = False) -> None:
        self.add(source.file, source.line(loc, of_key=of_key), reason)

    def raise_if_any(self) -> None:
        if self.errors:
            raise PolicyInvalid(sorted(self.errors, key=lambda e: (e.file, e.line)))


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A file read into its model; `dropped` are the entries and sections left out for their errors."""

    source: YamlFile
    model: M
    dropped: frozenset[Loc]


def load(path: Path, places: Places, model: type[M], report: Report) -> Loaded[M] | None:
    """Read `path` and validate it as `model`; every error goes to `report`.

    None when the file cannot be read or its overall shape is wrong.
    """
    source = read_yaml(path, places, report)
    if source is None:
        return None
    try:
        return Loaded(source, model.model_validate(source.data), frozenset())
    except ValidationError as exc:
        errors = exc.errors()
    for error in errors:
        loc, reason, of_key = _explain(error, places)
        report.at(source, loc, reason, of_key=of_key)
    dropped = frozenset(tuple(error["loc"][:2]) for error in errors)
    if () in dropped:
        return None
    for loc in sorted(dropped, key=_last_index_first):
        _drop(source, loc)
    try:
        return Loaded(source, model.model_validate(source.data), dropped)
    except ValidationError:  # a required section was dropped: what was reported says it all
        return None


def _explain(error: ErrorDetails, places: Places) -> tuple[Loc, str, bool]:
    """(where to point, reason, point at the key?) for one pydantic error."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if loc and loc[-1] == "[key]":  # the key itself is wrong (only our own checks validate keys)
        return loc[:-1], error["msg"], True
    parent, last = loc[:-1], loc[-1] if loc else ""
    if kind == "extra_forbidden":
        if not parent:
            return loc, f"unknown section {last!r}{places.expected(parent)}", True
        return loc, f"unknown key {last!r} in {places.phrase(parent)}{places.expected(parent)}", True
    if kind == "missing":
        return parent, f"{places.phrase(parent)} needs `{last}`", True
    what = places.phrase(loc)
    if kind == "policy":  # a model's own check across its fields: say which entry
        return loc, f"{what}: {error['msg']}", False
    expected = {
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "list_type": "a list",
        "string_type": "a string",
        "bool_type": "true or false",
        "literal_error": str((error.get("ctx") or {}).get("expected", "")),
    }.get(kind)
    if expected is not None:
        return loc, f"{what} must be {expected}", False
    if kind == "too_short":
        return loc, f"{what} must not be empty", False
    return loc, f"{what}: {error['msg']}", False


def _last_index_first(loc: Loc) -> tuple[int, ...]:
    """Drop list items from the end, so the indexes of the ones still to drop stay right."""
    return (-loc[-1],) if loc and isinstance(loc[-1], int) else (0,)


def _drop(source: YamlFile, loc: Loc) -> None:
    """Remove the entry or section at `loc` (one or two deep) and keep the lines of list items after it."""
    key = loc[-1]
    try:
        del (source.data if len(loc) == 1 else source.data[loc[0]])[key]
    except (KeyError, IndexError, TypeError):  # a missing key, or a section already dropped
        return
    if not isinstance(key, int):
        return
    base = loc[:-1]
    shifted: dict[Loc, tuple[int, int]] = {}
    for path, lines in source.lines.items():
        index = path[len(base)] if path[: len(base)] == base and len(path) > len(base) else None
        if isinstance(index, int) and index > key:
            path = (*base, index - 1, *path[len(base) + 1 :])
        elif index == key:
            continue
        shifted[path] = lines
    source.lines = shifted


_STR_TAG = "tag:yaml.org,2002:str"


def read_yaml(path: Path, places: Places, report: Report) -> YamlFile | None:
    """The file's data (an empty file is an empty mapping) and the line of everything in it."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add(file, 1, f"cannot read file: {exc}")
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return YamlFile(file, {}, {(): (1, 1)})
        source = YamlFile(file, None)
        source.data = _Builder(source, places, report).build(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        report.add(file, mark.line + 1 if mark is not None else 1, f"bad YAML: {exc.problem or exc}")
        return None
    return source


class _Builder:
    """Turns composed nodes into data, recording lines; reports duplicate and non-string keys."""

    def __init__(self, source: YamlFile, places: Places, report: Report) -> None:
        self.source = source
        self.places = places
        self.report = report
        self.scalars = yaml.SafeLoader("")  # its constructor turns scalar nodes into Python values

    def line_of(self, node: yaml.Node) -> int:
        return int(node.start_mark.line) + 1

    def build(self, node: yaml.Node, path: Loc) -> Any:
        if not path:
            self.source.lines[()] = (self.line_of(node), self.line_of(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.source.lines[(*path, index)] = (self.line_of(item), self.line_of(item))
                items.append(self.build(item, (*path, index)))
            return items
        return self.scalars.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        where = self.places.phrase(path)
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                self.report.add(self.source.file, self.line_of(key_node), f"{where}: keys must be plain names")
                continue
            key = key_node.value
            if key in result:
                self.report.add(self.source.file, self.line_of(key_node), f"duplicate key {key!r} in {where}")
                continue
            self.source.lines[(*path, key)] = (self.line_of(key_node), self.line_of(value_node))
            result[key] = self.build(value_node, (*path, key))
        return result
