"""Reading YAML as nodes, so every error can name the file and line it comes from."""

from dataclasses import dataclass
from pathlib import Path

import yaml


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


class NodeReader:
    """Walks a composed YAML document of one file, collecting errors instead of raising."""

    def __init__(self, path: Path, display_name: str) -> None:
        self.path = path
        self.file = display_name
        self.errors: list[PolicyError] = []

    def compose(self) -> yaml.Node | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.errors.append(PolicyError(self.file, 1, f"cannot read file: {exc}"))
            return None
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            self.errors.append(PolicyError(self.file, line, f"bad YAML: {exc.problem or exc}"))
            return None

    def error(self, node: yaml.Node, reason: str) -> None:
        self.errors.append(PolicyError(self.file, node.start_mark.line + 1, reason))

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) entries of a mapping; reports duplicates and non-string keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return []
        entries: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self.error(key_node, f"{what}: keys must be plain names")
                continue
            key = key_node.value
            if key in seen:
                self.error(key_node, f"duplicate key {key!r} in {what}")
                continue
            seen.add(key)
            entries.append((key, key_node, value_node))
        return entries

    def string(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.error(node, f"{what} must be a string")
            return None
        return node.value

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            self.error(node, f"{what} must be true or false")
            return None
        return node.value.lower() in ("true", "yes", "on")

    def string_list(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
        """A list of strings, or one string standing for a list of one."""
        if isinstance(node, yaml.ScalarNode):
            value = self.string(node, what)
            return [(value, node)] if value is not None else []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what} must be a list of names")
            return []
        items: list[tuple[str, yaml.Node]] = []
        for item in node.value:
            value = self.string(item, f"an entry of {what}")
            if value is not None:
                items.append((value, item))
        return items
