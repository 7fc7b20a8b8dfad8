"""The clients of the history checker: random concurrent operations against several replicas.

Each client thread picks an operation, a user and a replica at random, sends it over HTTP
and records the request and the answer (`Event`). Some operations are fired as racing
pairs from two threads released by one barrier (share vs delete, register vs archive of
the org, demote vs demote, transfer vs demote, restore vs purge, accept vs archive, ...): the
races DESIGN.md invariant 5a is about. A chaos thread cuts and restores the replicas' database
connection meanwhile. Nothing here decides whether an answer was right: `tests.history.verify`
does, afterwards, from the database.
"""

import itertools
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.problems import status_of
from authz.domain import ids
from authz.domain.errors import AuthzError
from tests.conftest import BILLING, auth
from tests.replicas.tcp_proxy import TcpProxy
from tests.smtp_server import Inbox

USERS = [f"u{n}" for n in range(6)]
RESOURCES = [f"r{n}" for n in range(8)]
ROLES = ["viewer", "maintainer", "owner"]
ACTIONS = ["read", "update", "delete", "create", "share"]
PROVIDERS = ["ibm", "ionq"]
TOKEN = re.compile(r"token=(\S+)")


@dataclass
class Event:
    """One request and its answer, as the checker saw them."""

    kind: str
    user: str
    replica: str
    request_id: str
    body: dict[str, Any]
    status: int
    answer: Any
    revision: int | None  # X-Authz-Revision of a write, or the `revision` of a decision
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Knowledge:
    """What the clients have learnt (from answers) to aim their next operations; shared, locked."""

    orgs: dict[str, str] = field(default_factory=dict)  # org id → its creator
    archived: dict[str, str] = field(default_factory=dict)  # archived org id → its creator
    members_of: dict[str, set[str]] = field(default_factory=dict)  # org id → users who accepted an invitation
    gone_from: dict[str, set[str]] = field(default_factory=dict)  # org id → users removed or who left
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (creator, context as sent)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_org(self, org_id: str, creator: str) -> None:
        with self.lock:
            self.orgs[org_id] = creator

    def add_resource(self, resource_id: str, creator: str, context: str) -> None:
        with self.lock:
            self.resources[resource_id] = (creator, context)

    def some_org(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(sorted(self.orgs)) if self.orgs else None

    def forget_org(self, org_id: str) -> None:
        """Archived: it may come back (restore) or go for good (purge)."""
        with self.lock:
            creator = self.orgs.pop(org_id, None)
            if creator is not None:
                self.archived[org_id] = creator

    def joined(self, org_id: str, user: str) -> None:
        with self.lock:
            self.members_of.setdefault(org_id, set()).add(user)

    def left(self, org_id: str, user: str) -> None:
        with self.lock:
            self.gone_from.setdefault(org_id, set()).add(user)

    def some_former(self, rng: random.Random, org_id: str) -> str:
        with self.lock:
            gone = sorted(self.gone_from.get(org_id, ()))
        return rng.choice(gone) if gone and rng.random() < 0.8 else rng.choice(USERS)

    def some_member(self, rng: random.Random, org_id: str) -> str:
        """Someone who joined the org at some point (maybe gone since), else anyone."""
        with self.lock:
            joined = sorted(self.members_of.get(org_id, ()))
        return rng.choice(joined) if joined and rng.random() < 0.8 else rng.choice(USERS)

    def restored(self, org_id: str) -> None:
        with self.lock:
            creator = self.archived.pop(org_id, None)
            if creator is not None:
                self.orgs[org_id] = creator

    def some_archived(self, rng: random.Random) -> tuple[str, str] | None:
        """(org id, creator) of an org archived at some point."""
        with self.lock:
            if not self.archived:
                return None
            org_id = rng.choice(sorted(self.archived))
            return org_id, self.archived[org_id]

    def creator(self, org_id: str | None) -> str | None:
        with self.lock:
            if org_id is None:
                return None
            return self.orgs.get(org_id) or self.archived.get(org_id)

    def some_resource(self, rng: random.Random) -> tuple[str, str, str] | None:
        """(id, creator, context) of a resource registered at some point."""
        with self.lock:
            if not self.resources:
                return None
            resource_id = rng.choice(sorted(self.resources))
            return (resource_id, *self.resources[resource_id])

    def actor(self, rng: random.Random, org_id: str | None) -> str:
        """Mostly the org's creator (so writes get past authorization), else anyone."""
        creator = self.creator(org_id)
        return creator if creator is not None and rng.random() < 0.6 else rng.choice(USERS)


class Workload:
    """Runs the clients for a while against the replicas' URLs; `events` is the history."""

    def __init__(self, urls: dict[str, str], inbox: Inbox, proxy: TcpProxy | None, seed: int, *,
                 resolver_key: str | None = None, purge: Callable[[str, str], None] | None = None,
                 readers: dict[str, str] | None = None) -> None:
        """`resolver_key`: a service key with tokens:resolve; `purge(org, request_id)`: the operator's purge --now;
        `readers`: decision points that answer decisions only (sidecars), asked like the replicas."""
        self.urls = urls
        self.resolver_key = resolver_key
        self.purge = purge
        self.restore_attempts: list[tuple[str, float]] = []  # (org, when sent) of every restore, answered or not
        self.inbox = inbox
        self.proxy = proxy
        self.seed = seed
        self.events: list[Event] = []
        self.cuts = 0
        self._events_lock = threading.Lock()
        self._ids = itertools.count()
        self._known = Knowledge()
        self._clients = {name: httpx.Client(base_url=url, timeout=15.0) for name, url in urls.items()}
        self._readers = {name: httpx.Client(base_url=url, timeout=15.0) for name, url in (readers or {}).items()}
        self._pairs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="history-pair")
        self._used_tokens: set[str] = set()

    def run(self, seconds: float, threads: int) -> None:
        stop = threading.Event()
        workers = [threading.Thread(target=self._client, args=(n, stop), name=f"history-{n}") for n in range(threads)]
        chaos = threading.Thread(target=self._chaos, args=(stop,), name="history-chaos")
        for worker in workers:
            worker.start()
        chaos.start()
        time.sleep(seconds)
        stop.set()
        for thread in [*workers, chaos]:
            thread.join(timeout=60)
        if self.proxy is not None:
            self.proxy.restore()
        self._pairs.shutdown()
        for client in [*self._clients.values(), *self._readers.values()]:
            client.close()

    # ---- faults ---------------------------------------------------------------------------

    def _chaos(self, stop: threading.Event) -> None:
        """Cut the database connection of every replica now and then, for up to 1.5 s."""
        if self.proxy is None:
            return
        rng = random.Random(self.seed + 1)
        while not stop.wait(rng.uniform(3.0, 6.0)):
            self.proxy.cut()
            self.cuts += 1
            stop.wait(rng.uniform(0.3, 1.5))
            self.proxy.restore()

    # ---- clients --------------------------------------------------------------------------

    def _client(self, number: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + number)
        seen_revision = 0
        operations: list[tuple[int, Callable[[random.Random, int], int | None]]] = [
            (2, self._create_org), (6, self._invite), (6, self._accept), (5, self._change_role),
            (3, self._remove_member), (8, self._register), (4, self._delete_resource), (6, self._share),
            (2, self._unshare), (1, self._delete_org), (3, self._set_token), (1, self._delete_token),
            (25, self._check), (5, self._list_resources), (8, self._race),
            (2, self._transfer), (2, self._restore), (3, self._resolve), (1, self._purge),
            (1, self._bulk_invite), (2, self._reinstate),
        ]
        population = [operation for weight, operation in operations for _ in range(weight)]
        while not stop.is_set():
            operation = rng.choice(population)
            try:
                revision = operation(rng, seen_revision)
            except httpx.HTTPError:
                continue  # a timeout or a reset: the answer is unknown, so nothing is recorded
            if revision is not None:
                seen_revision = max(seen_revision, revision)

    def _send(self, method: str, path: str, user: str, kind: str, rng: random.Random, *,
              body: dict[str, Any] | None = None, context: str | None = None) -> Event:
        decision = path in ("/v1/check", "/v1/list-resources")
        replica = rng.choice(sorted(self._clients) + (sorted(self._readers) if decision else []))
        http = self._clients.get(replica) or self._readers[replica]
        request_id = f"hist-{self.seed}-{next(self._ids)}"
        headers = {**auth(user, context=context), "X-Request-Id": request_id}
        started = time.time()  # wall clock: grants expire at wall-clock instants
        response = http.request(method, path, json=body, headers=headers)
        ended = time.time()
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = response.text
        revision = response.headers.get("x-authz-revision")
        if path in ("/v1/check", "/v1/list-resources"):  # a decision reports the revision it was made at
            revision = answer.get("revision") if isinstance(answer, dict) else None
        event = Event(kind, user, replica, request_id, body or {}, response.status_code, answer,
                      int(revision) if revision is not None else None, started, ended)
        with self._events_lock:
            self.events.append(event)
        return event

    def _written(self, event: Event) -> int | None:
        return event.revision if event.ok else None

    def _create_org(self, rng: random.Random, _seen: int) -> int | None:
        user = rng.choice(USERS)
        event = self._send("POST", "/v1/organizations", user, "create_org", rng,
                           body={"name": f"Org of {user}", "billing_address": BILLING})
        if event.status == 201:
            self._known.add_org(event.answer["id"], user)
        return self._written(event)

    def _invite(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        body = {"email": f"{rng.choice(USERS)}@example.com", "role": rng.choice(ROLES)}
        return self._written(self._send("POST", f"/v1/organizations/{org}/invitations", self._known.actor(rng, org),
                                        "invite", rng, body=body))

    def _bulk_invite(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        rows = [{"email": f"{rng.choice(USERS)}@example.com", "role": rng.choice(ROLES)}
                for _ in range(rng.randint(1, 4))]
        self._send("POST", f"/v1/organizations/{org}/invitations:bulk", self._known.actor(rng, org), "bulk_invite",
                   rng, body={"invitations": rows})
        return None

    def _reinstate(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        path = f"/v1/organizations/{org}/members/{self._known.some_former(rng, org)}/reinstate"
        self._send("POST", path, self._known.actor(rng, org), "reinstate", rng)
        return None

    def _accept_event(self, rng: random.Random) -> tuple[str, str] | None:
        """(user, token) of an invitation email not used yet."""
        with self.inbox.arrived:
            received = list(self.inbox.received)
        rng.shuffle(received)
        for message in received:
            match = TOKEN.search(message.text)
            if match is None:
                continue
            token = match.group(1)
            with self._known.lock:
                if token in self._used_tokens:
                    continue
                self._used_tokens.add(token)
            return message.rcpt_tos[0].split("@")[0], token
        return None

    def _accept(self, rng: random.Random, _seen: int) -> int | None:
        found = self._accept_event(rng)
        if found is None:
            return None
        user, token = found
        event = self._send("POST", "/v1/invitations/accept", user, "accept", rng, body={"token": token})
        if event.status == 200:
            self._known.joined(event.answer["organization_id"], user)
        return self._written(event)

    def _change_role(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        path = f"/v1/organizations/{org}/members/{rng.choice(USERS)}"
        body: dict[str, Any] = {"role": rng.choice(ROLES)}
        if rng.random() < 0.25:
            body["expires_at"] = _in_seconds(rng.uniform(1, 4))
        return self._written(self._send("PATCH", path, self._known.actor(rng, org), "change_role", rng, body=body))

    def _remove_member(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        user = self._known.actor(rng, org)
        target = user if rng.random() < 0.4 else rng.choice(USERS)  # leaving, or removing someone
        event = self._send("DELETE", f"/v1/organizations/{org}/members/{target}", user, "remove_member", rng)
        if event.status == 204:
            self._known.left(org, target)
        return self._written(event)

    def _register(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        context = org if org is not None and rng.random() < 0.8 else "personal"
        user = self._known.actor(rng, org) if context == org else rng.choice(USERS)
        resource_id = rng.choice(RESOURCES)
        event = self._send("POST", "/v1/resources", user, "register", rng,
                           body={"type": "algorithm", "id": resource_id}, context=context)
        if event.status == 201:
            self._known.add_resource(resource_id, user, context or "personal")
        return self._written(event)

    def _resource_actor(self, rng: random.Random) -> tuple[str, str]:
        """(resource id, user): mostly a known resource and its creator, else anything."""
        known = self._known.some_resource(rng)
        if known is not None and rng.random() < 0.7:
            return known[0], known[1]
        return rng.choice(RESOURCES), rng.choice(USERS)

    def _delete_resource(self, rng: random.Random, _seen: int) -> int | None:
        resource_id, user = self._resource_actor(rng)
        return self._delete_as(rng, user, resource_id)

    def _share(self, rng: random.Random, _seen: int) -> int | None:
        resource_id, user = self._resource_actor(rng)
        path = f"/v1/resources/algorithm/{resource_id}/members/{rng.choice(USERS)}"
        body: dict[str, Any] = {"role": rng.choice(ROLES)}
        if rng.random() < 0.3:  # a grant that ends within seconds, while clients keep asking
            body["expires_at"] = _in_seconds(rng.uniform(1, 4))
        return self._written(self._send("PUT", path, user, "share", rng, body=body))

    def _unshare(self, rng: random.Random, _seen: int) -> int | None:
        resource_id, user = self._resource_actor(rng)
        path = f"/v1/resources/algorithm/{resource_id}/members/{rng.choice(USERS)}"
        return self._written(self._send("DELETE", path, user, "unshare", rng))

    def _delete_org(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        return self._delete_org_as(rng, self._known.actor(rng, org), org)

    def _transfer(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        return self._transfer_as(rng, self._known.actor(rng, org), org, self._known.some_member(rng, org))

    def _transfer_as(self, rng: random.Random, user: str, org: str | None, target: str) -> int | None:
        return self._written(self._send("POST", f"/v1/organizations/{org}/transfer", user, "transfer", rng,
                                        body={"to_user_id": target}))

    def _restore(self, rng: random.Random, _seen: int) -> int | None:
        found = self._known.some_archived(rng)
        if found is None:
            return None
        org, creator = found
        return self._restore_as(rng, creator if rng.random() < 0.7 else rng.choice(USERS), org)

    def _restore_as(self, rng: random.Random, user: str, org: str | None) -> int | None:
        if org is None:
            return None
        with self._events_lock:
            self.restore_attempts.append((org, time.monotonic()))
        event = self._send("POST", f"/v1/organizations/{org}/restore", user, "restore", rng)
        event.body["org"] = org
        if event.status == 200:
            self._known.restored(org)
        return self._written(event)

    def _purge(self, rng: random.Random, _seen: int) -> int | None:
        """The operator's `authz orgs purge --now` of an archived org, from outside the replicas."""
        found = self._known.some_archived(rng)
        if found is None or self.purge is None:
            return None
        return self._purge_org(found[0])

    def _purge_org(self, org: str | None) -> int | None:
        if org is None or self.purge is None:
            return None
        request_id = f"hist-{self.seed}-{next(self._ids)}"
        started = time.monotonic()
        try:
            self.purge(org, request_id)
            status, answer = 200, None
        except AuthzError as exc:  # not archived (restored first): 409; purged already: 404
            status, answer = status_of(exc), exc.detail
        except Exception as exc:  # noqa: BLE001 - recorded as a 500: a violation for the checker
            status, answer = 500, repr(exc)
        event = Event("purge", "cli", "direct", request_id, {"org": org}, status, answer, None, started,
                      time.monotonic())
        with self._events_lock:
            self.events.append(event)
        return None

    def _resolve(self, rng: random.Random, _seen: int) -> int | None:
        """A job asks for a backend token of an org (live, or archived: which must not resolve)."""
        if self.resolver_key is None:
            return None
        found = self._known.some_archived(rng) if rng.random() < 0.4 else None
        org = found[0] if found is not None else self._known.some_org(rng)
        if org is None:
            return None
        body = {"user_id": self._known.actor(rng, org), "context": org, "provider": rng.choice(PROVIDERS)}
        replica = rng.choice(sorted(self._clients))
        request_id = f"hist-{self.seed}-{next(self._ids)}"
        started = time.monotonic()
        response = self._clients[replica].post("/v1/backend-tokens/resolve", json=body, headers={
            "Authorization": f"Bearer {self.resolver_key}", "X-Request-Id": request_id})
        event = Event("resolve", body["user_id"], replica, request_id, body, response.status_code,
                      response.json() if response.content else None, None, started, time.monotonic())
        with self._events_lock:
            self.events.append(event)
        return None

    def _set_token(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        path = f"/v1/organizations/{org}/backend-tokens/{rng.choice(PROVIDERS)}"
        self._send("PUT", path, self._known.actor(rng, org), "set_token", rng,
                   body={"token": f"secret-{rng.random()}"})
        return None

    def _delete_token(self, rng: random.Random, _seen: int) -> int | None:
        org = self._known.some_org(rng)
        if org is None:
            return None
        self._send("DELETE", f"/v1/organizations/{org}/backend-tokens/{rng.choice(PROVIDERS)}",
                   self._known.actor(rng, org), "delete_token", rng)
        return None

    def _check(self, rng: random.Random, seen: int) -> int | None:
        body: dict[str, Any] = {"action": rng.choice(ACTIONS), "resource": {"type": "algorithm"}}
        if rng.random() < 0.7:
            body["resource"]["id"] = rng.choice(RESOURCES)
        else:
            archived = self._known.some_archived(rng) if rng.random() < 0.2 else None
            org = archived[0] if archived is not None else self._known.some_org(rng)
            body["context"] = org if org is not None and rng.random() < 0.8 else "personal"
        if seen and rng.random() < 0.3:
            body["min_revision"] = seen  # read your writes
        event = self._send("POST", "/v1/check", rng.choice(USERS), "check", rng, body=body)
        return event.revision if event.ok else None

    def _list_resources(self, rng: random.Random, _seen: int) -> int | None:
        body = {"action": rng.choice(ACTIONS), "type": "algorithm"}
        event = self._send("POST", "/v1/list-resources", rng.choice(USERS), "list_resources", rng, body=body)
        return event.revision if event.ok else None

    # ---- racing pairs ---------------------------------------------------------------------

    def _race(self, rng: random.Random, seen: int) -> int | None:
        """Two conflicting writes released together (the races of DESIGN.md invariant 5a)."""
        known = self._known.some_resource(rng)
        if known is not None and rng.random() < 0.6:
            resource, owner, context = known
            org = context if ids.is_org_id(context) else self._known.some_org(rng)
        else:
            resource, org = rng.choice(RESOURCES), self._known.some_org(rng)
            owner = self._known.creator(org) or rng.choice(USERS)
        other = rng.choice([user for user in USERS if user != owner])
        archived_org, archived_owner = self._known.some_archived(rng) or (org, owner)
        pairs: list[tuple[Callable[[random.Random, int], int | None], ...]] = [
            (lambda r, s: self._share_as(r, owner, resource, other), lambda r, s: self._delete_as(r, owner, resource)),
            (lambda r, s: self._register_as(r, owner, resource, org), lambda r, s: self._delete_org_as(r, owner, org)),
            (lambda r, s: self._share_as(r, owner, resource, other), lambda r, s: self._delete_org_as(r, owner, org)),
            (lambda r, s: self._demote(r, owner, org, owner), lambda r, s: self._demote(r, other, org, other)),
            (self._accept, lambda r, s: self._delete_org_as(r, owner, org)),
            (lambda r, s: self._transfer_as(r, owner, org, other), lambda r, s: self._demote(r, other, org, owner)),
            (lambda r, s: self._transfer_as(r, owner, org, other), lambda r, s: self._demote(r, owner, org, other)),
            (lambda r, s: self._restore_as(r, archived_owner, archived_org),
             lambda r, s: self._purge_org(archived_org)),
            (lambda r, s: self._restore_as(r, archived_owner, archived_org),
             lambda r, s: self._delete_org_as(r, archived_owner, archived_org)),
        ]
        first, second = rng.choice(pairs)
        if org is None:
            return None
        barrier = threading.Barrier(2)
        seeds = (rng.random(), rng.random())

        def fire(operation: Callable[[random.Random, int], int | None], seed: float) -> int | None:
            barrier.wait(timeout=10)
            return operation(random.Random(seed), seen)

        futures = [self._pairs.submit(fire, first, seeds[0]), self._pairs.submit(fire, second, seeds[1])]
        revisions = []
        for future in futures:
            try:
                revisions.append(future.result(timeout=60))
            except (httpx.HTTPError, threading.BrokenBarrierError):
                continue
        return max((r for r in revisions if r is not None), default=None)

    def _share_as(self, rng: random.Random, user: str, resource: str, target: str) -> int | None:
        return self._written(self._send("PUT", f"/v1/resources/algorithm/{resource}/members/{target}", user,
                                        "share", rng, body={"role": "owner"}))

    def _delete_as(self, rng: random.Random, user: str, resource: str) -> int | None:
        return self._written(self._send("DELETE", f"/v1/resources/algorithm/{resource}", user, "delete_resource", rng))

    def _register_as(self, rng: random.Random, user: str, resource: str, org: str | None) -> int | None:
        return self._written(self._send("POST", "/v1/resources", user, "register", rng,
                                        body={"type": "algorithm", "id": resource}, context=org))

    def _delete_org_as(self, rng: random.Random, user: str, org: str | None) -> int | None:
        event = self._send("DELETE", f"/v1/organizations/{org}", user, "archive_org", rng)
        event.body["org"] = org
        if event.status == 204 and org is not None:
            self._known.forget_org(org)
        return self._written(event)

    def _demote(self, rng: random.Random, user: str, org: str | None, target: str) -> int | None:
        return self._written(self._send("PATCH", f"/v1/organizations/{org}/members/{target}", user, "change_role",
                                        rng, body={"role": "maintainer"}))


def _in_seconds(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
