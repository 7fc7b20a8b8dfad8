"""The paging guarantee as a property: random writes interleaved with page fetches.

Hypothesis draws a starting state and a walk: page fetches (each from one of two replicas
that apply the same writes, as two processes behind a load balancer would), with random
writes in between (resources registered and deleted, the subject joining and leaving orgs,
roles on single resources granted and taken). Then:
- every id visible from the first page to the last appears exactly once;
- no id appears twice;
- every id on a page was visible when that page was read.
"""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.domain import ids
from authz.domain.cursors import CursorCodec
from authz.domain.principal import Principal
from authz.engine.replica import Snapshot
from authz.services import decisions
from authz_client.decisions.index import DecisionIndex
from tests.hypothesis_budget import examples

ORGS = ["org_" + f"{n:024x}" for n in range(1, 4)]
USERS = [f"u{n:02d}" for n in range(12)]
RESOURCES = [f"r{n:02d}" for n in range(16)]
SUBJECT = "u00"
SERVICE = Principal(kind="service", id="svc", scopes=frozenset({"check"}))
CURSORS = CursorCodec(b"shared cursor key of the replicas")  # both replicas' key
POLICY = [
    ("p", "viewer", "*", "algorithm", "read"),
    ("p", "owner", "*", "algorithm", "delete"),
    ("g", "maintainer", "viewer", "*"),
    ("g", "owner", "maintainer", "*"),
]

contexts = st.sampled_from(ORGS + [ids.personal_context(SUBJECT)])
roles = st.sampled_from(["viewer", "maintainer", "owner"])
writes = st.one_of(
    st.tuples(st.just("add_resource"), st.sampled_from(RESOURCES), contexts),
    st.tuples(st.just("remove_resource"), st.sampled_from(RESOURCES)),
    st.tuples(st.just("join"), st.sampled_from(USERS), st.sampled_from(ORGS), roles),
    st.tuples(st.just("leave"), st.sampled_from(USERS), st.sampled_from(ORGS)),
    st.tuples(st.just("grant"), st.sampled_from(USERS), st.sampled_from(RESOURCES), roles),
    st.tuples(st.just("revoke"), st.sampled_from(USERS), st.sampled_from(RESOURCES)),
)
# A walk: (page size, which replica serves the page, writes before the next page).
steps = st.lists(st.tuples(st.integers(1, 4), st.integers(0, 1), st.lists(writes, max_size=4)), min_size=1, max_size=30)


class World:
    """Two replicas' indexes, kept equal, and who holds which role (to remove exactly that rule)."""

    def __init__(self) -> None:
        self.replicas = [DecisionIndex(), DecisionIndex()]
        self.members: dict[tuple[str, str], str] = {}
        self.scoped: dict[tuple[str, str], str] = {}
        self.resources: dict[str, str] = {}
        for rule in POLICY:
            self._each("add_rule", rule)

    def _each(self, method: str, *args: Any) -> None:
        for position, index in enumerate(self.replicas):
            editor = index.edit()  # indexes are immutable: each change publishes a new one
            getattr(editor, method)(*args)
            self.replicas[position] = editor.finish()

    def apply(self, write: tuple[Any, ...]) -> None:
        kind = write[0]
        if kind == "add_resource" and write[1] not in self.resources:  # a context never changes
            self.resources[write[1]] = write[2]
            self._each("add_resource", "algorithm", write[1], write[2])
        elif kind == "remove_resource" and write[1] in self.resources:
            del self.resources[write[1]]
            self._each("remove_resource", "algorithm", write[1])
            for user, resource in [key for key in self.scoped if key[1] == write[1]]:
                self._revoke(user, resource)
        elif kind == "join":
            self._leave(write[1], write[2])
            self.members[(write[1], write[2])] = write[3]
            self._each("add_rule", ("g", ids.subject_of(write[1]), write[3], write[2]))
        elif kind == "leave":
            self._leave(write[1], write[2])
        elif kind == "grant" and write[2] in self.resources:
            self._revoke(write[1], write[2])
            self.scoped[(write[1], write[2])] = write[3]
            self._each("add_rule", ("g", ids.subject_of(write[1]), write[3], ids.resource_scope("algorithm", write[2])))
        elif kind == "revoke":
            self._revoke(write[1], write[2])

    def _leave(self, user: str, org: str) -> None:
        role = self.members.pop((user, org), None)
        if role is not None:
            self._each("remove_rule", ("g", ids.subject_of(user), role, org))

    def _revoke(self, user: str, resource: str) -> None:
        role = self.scoped.pop((user, resource), None)
        if role is not None:
            self._each("remove_rule", ("g", ids.subject_of(user), role, ids.resource_scope("algorithm", resource)))

    def snapshot(self, replica: int) -> Snapshot:
        """What one page reads: the replica's published state."""
        return Snapshot(0, self.replicas[replica], None)


def _walk(world: World, walk: list[tuple[int, int, list[tuple[Any, ...]]]], fetch: Any, everything: Any) -> None:
    present = set(everything())  # visible from the start ...
    shown: list[str] = []
    cursor = None
    for size, replica, between in walk:
        visible_now = set(everything())
        page = fetch(world.snapshot(replica), size, cursor)
        assert len(page.items) <= size
        assert set(page.items) <= visible_now, "a page shows an id that is not visible"
        assert page.items == sorted(page.items)
        shown += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
        for write in between:
            world.apply(write)
            present &= set(everything())  # ... and still visible after every change
    else:
        while cursor is not None:  # finish the walk without further changes
            page = fetch(world.snapshot(0), 3, cursor)
            shown += page.items
            cursor = page.next_cursor
    assert len(shown) == len(set(shown)), f"an id was shown twice: {shown}"
    assert present <= set(shown), f"ids visible throughout but never shown: {sorted(present - set(shown))}"
    assert shown == sorted(shown)


def _start(world: World, initial: list[tuple[Any, ...]]) -> None:
    for write in initial:
        world.apply(write)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.lists(writes, max_size=40), walk=steps, context=st.none() | contexts)
def test_list_resources_walk_shows_each_id_visible_throughout_exactly_once(
    initial: list[tuple[Any, ...]], walk: list[tuple[int, int, list[tuple[Any, ...]]]], context: str | None,
) -> None:
    world = World()
    _start(world, initial)

    def fetch(snapshot: Snapshot, size: int, cursor: str | None) -> decisions.Listing:
        return decisions.list_resources(snapshot, SERVICE, cursors=CURSORS, subject=SUBJECT, action="read",
                                        resource_type="algorithm", context=context, default_context=None, limit=size,
                                        cursor=cursor)

    def everything() -> list[str]:
        return world.replicas[0].list_resources(SUBJECT, "read", "algorithm", context)

    _walk(world, walk, fetch, everything)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.lists(writes, max_size=40), walk=steps, resource=st.sampled_from(RESOURCES))
def test_list_subjects_walk_shows_each_id_visible_throughout_exactly_once(
    initial: list[tuple[Any, ...]], walk: list[tuple[int, int, list[tuple[Any, ...]]]], resource: str,
) -> None:
    world = World()
    _start(world, initial)

    def fetch(snapshot: Snapshot, size: int, cursor: str | None) -> decisions.Listing:
        return decisions.list_subjects(snapshot, SERVICE, cursors=CURSORS, action="read", resource_type="algorithm",
                                       resource_id=resource, limit=size, cursor=cursor)

    def everything() -> list[str]:
        return world.replicas[0].list_subjects("read", "algorithm", resource)

    _walk(world, walk, fetch, everything)
