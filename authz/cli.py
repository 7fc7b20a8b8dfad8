"""The admin's command line: `authz serve`, `authz policy ...`, `authz check`, keys and tokens."""

import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from authz.domain.errors import AuthzError
from authz.domain.principal import cli_principal
from authz.policy.loader import load_policy_dir
from authz.policy.suites import run_suites
from authz.policy.yaml_nodes import PolicyInvalid
from authz.settings import Settings

if TYPE_CHECKING:
    from authz.secrets import KeyRing
    from authz.services.runtime import Runtime

# No locals in crash reports: they may hold keys, tokens or a database password.
app = typer.Typer(help="authz: organizations and authorization decisions.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False)
policy_app = typer.Typer(help="Validate, test and apply the policy files.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Service keys for other platform components.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="service-key")
secrets_app = typer.Typer(help="Encryption keys of the stored backend tokens.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
orgs_app = typer.Typer(help="Organizations: list, show, archive, restore, purge.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
OrgArg = Annotated[str, typer.Argument(help="the organization id (org_...)")]

# How `authz serve` runs uvicorn (the bench's no-op baseline uses the same): uvloop and the
# httptools parser explicitly (both come with uvicorn[standard]; "auto" silently falls back
# to asyncio and h11, several times slower), and no access log (the app logs each request).
UVICORN_OPTIONS: dict[str, Any] = {"loop": "uvloop", "http": "httptools", "access_log": False, "log_config": None,
                                   # On a stop, event streams and long polls end at once (api.serving); this
                                   # bounds what else is still running.
                                   "timeout_graceful_shutdown": 3}

DirArg = Annotated[Path | None, typer.Argument(help="policy directory (default: AUTHZ_POLICY_DIR)")]


def _settings() -> Settings:
    """The settings from the environment; an invalid value stops the command with one line naming it."""
    from authz.startup_checks import SettingUnusable, settings_from_environment

    try:
        return settings_from_environment()
    except SettingUnusable as exc:
        raise _fail(f"invalid setting: {exc}") from None


def _startup_checked(settings: Settings, *, policy_dir: bool = True) -> Settings:
    """Stop before listening when a setting cannot work (a missing file, an unreadable key, an empty secret)."""
    from authz.startup_checks import SettingUnusable, check_settings

    try:
        check_settings(settings, policy_dir=policy_dir)
    except SettingUnusable as exc:
        raise _fail(f"cannot start: {exc}") from None
    return settings


def _model_checked(settings: Settings) -> Settings:
    from authz.startup_checks import SettingUnusable, check_policy_model

    try:
        check_policy_model(settings)
    except SettingUnusable as exc:
        raise _fail(str(exc)) from None
    return settings


def _store(settings: Settings, key_ring: "KeyRing | None" = None) -> "Runtime":
    """The database for a command that only reads or writes rows: no migration, no index (bootstrap.open_store)."""
    from authz.bootstrap import open_store
    from authz.store.migrate import SchemaNotCurrent

    try:
        return open_store(settings, key_ring=key_ring)
    except (SchemaNotCurrent, AuthzError) as exc:
        raise _fail(f"cannot use the database: {_reason(exc)}") from None


def _replica(settings: Settings) -> "Runtime":
    """The database and this process's index of it, loaded once, for a command that answers decisions."""
    from authz.bootstrap import open_replica
    from authz.store.migrate import SchemaNotCurrent

    try:
        runtime = open_replica(settings)
    except (SchemaNotCurrent, AuthzError) as exc:
        raise _fail(f"cannot use the database: {_reason(exc)}") from None
    if runtime.replica.snapshot.policy is None:
        raise _fail("the database holds no policy yet: run `authz policy apply` (or start `authz serve`)")
    return runtime


def _reason(exc: Exception) -> str:
    return exc.detail if isinstance(exc, AuthzError) else str(exc)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def _print_policy_errors(exc: PolicyInvalid) -> None:
    for error in exc.errors:
        typer.echo(str(error), err=True)


def _long_lived_imports() -> "AbstractContextManager[None]":
    """No cyclic garbage collection while the server's modules import, then freeze what they built: their
    objects live as long as the process, and the collections that walked them again and again cost a
    start to ready on SQLite 0.17 s of its 1.3 s of CPU, paid by every process and replica."""
    from authz_client.decisions.stream import bulk_allocation

    return bulk_allocation()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="processes forked after one load, each following the changelog")
    ] = 1,
) -> None:
    """Run the HTTP service (upgrades the schema and loads policies/ if the database has none)."""
    from authz.logging_setup import configure_logging

    settings = _startup_checked(_settings())
    configure_logging(settings.log_level)
    _require_secret_keys(settings)
    with _long_lived_imports():
        from api.app import create_app
        from api.prefork import serve_prefork
        from api.serving import serve as serve_app
    if workers > 1:
        # The state is loaded once and the workers are forked from it (api.prefork), sharing its pages
        # (and the logging configured above).
        raise typer.Exit(serve_prefork(settings, host, port, workers, UVICORN_OPTIONS))
    serve_app(create_app(settings), UVICORN_OPTIONS, host=host, port=port)


@app.command()
def sidecar(
    upstream: Annotated[str, typer.Option(help="the authz service to follow, e.g. http://authz.internal:8000")],
    key_file: Annotated[Path, typer.Option(help="file holding a service key with the changes:read and check scopes")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8001,
) -> None:
    """Answer decisions next to an application, from a replica that follows UPSTREAM (no database)."""
    from authz.logging_setup import configure_logging

    if not upstream.startswith(("http://", "https://")):
        raise _fail("--upstream must be an http:// or https:// URL")
    try:
        key = key_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _fail(f"cannot read --key-file {key_file}: {exc.strerror}") from None
    if not key.startswith("azk_") or len(key.split()) != 1:
        raise _fail(f"--key-file {key_file} must hold one service key (azk_...) on one line")
    settings = _startup_checked(_settings(), policy_dir=False)  # its policy, routes included, is the upstream's
    configure_logging(settings.log_level)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per snapshot or stream opened
    with _long_lived_imports():
        from api.serving import serve as serve_app
        from api.sidecar import create_sidecar_app

    serve_app(create_sidecar_app(settings, upstream, key), UVICORN_OPTIONS, host=host, port=port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    from authz.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    typer.echo("schema is up to date")


@policy_app.command("validate")
def policy_validate(directory: DirArg = None) -> None:
    """Validate the policy files: each error with file, line and reason; exit 1 on any.

    Then rehearse: apply them to a scratch database as `apply` would and start a replica
    from it, so what passes here also applies and serves.
    """
    from authz.services.policy_admin import rehearse_policy

    settings = _settings()
    path = directory or settings.policy_dir
    try:
        document = load_policy_dir(path)
        routes = document.routes
        rehearse_policy(settings, path, document)
    except PolicyInvalid as exc:
        _print_policy_errors(exc)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: valid ({len(document.roles)} roles, {len(document.types)} types, "
               f"{len(document.permission_rules())} permission rules, "
               f"{len(routes) if routes.source else 'no'} forward-auth routes)")


@policy_app.command("test")
def policy_test(directory: DirArg = None) -> None:
    """Run the policy test suites (tests/*_test.yaml) offline against the real model."""
    from authz.services.policy_admin import rehearse_policy

    settings = _model_checked(_settings())
    path = directory or settings.policy_dir
    try:
        document = load_policy_dir(path)
        rehearse_policy(settings, path, document)  # a suite of a policy that cannot be applied proves nothing
        results = run_suites(path, document, settings.policy_model)
    except PolicyInvalid as exc:
        _print_policy_errors(exc)
        raise typer.Exit(1) from None
    failed = [r for r in results if not r.passed]
    for result in failed:
        typer.echo(f"FAIL {result}")
    typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or not results:
        raise typer.Exit(1)


@policy_app.command("apply")
def policy_apply(
    directory: DirArg = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the diff only")] = False,
) -> None:
    """Validate, then replace the permission rules in the database as one revision."""
    from authz.services.policy_admin import apply_policy

    settings = _settings()
    path = directory or settings.policy_dir
    try:
        document = load_policy_dir(path)
    except PolicyInvalid as exc:
        _print_policy_errors(exc)
        raise typer.Exit(1) from None
    runtime = _store(settings)  # rows only: the replicas learn of the new revision from the changelog
    try:
        written = apply_policy(runtime, cli_principal(), document, dry_run=dry_run)
    except AuthzError as exc:
        raise _fail(f"{path}: {exc.detail}") from None
    for rule in written.value.added:
        typer.echo("+ " + ", ".join(rule))
    for rule in written.value.removed:
        typer.echo("- " + ", ".join(rule))
    for route in written.value.routes_added:
        typer.echo("+ route " + route)
    for route in written.value.routes_removed:
        typer.echo("- route " + route)
    if written.value.empty:
        typer.echo("no rule changes")
    if dry_run:
        typer.echo("dry run: nothing applied")
    elif written.revision is not None:
        typer.echo(f"applied as revision {written.revision}")


@app.command()
def check(
    subject: Annotated[str, typer.Option(help="user id")],
    action: Annotated[str, typer.Option(help="action, e.g. read")],
    resource: Annotated[str, typer.Option(help="TYPE or TYPE:ID")],
    context: Annotated[str | None, typer.Option(help="org id or personal (type-level actions)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="say which role and rule decided")] = False,
) -> None:
    """Ask the configured database whether SUBJECT may do ACTION on RESOURCE."""
    import json

    from authz.domain.principal import Principal
    from authz.services import decisions

    settings = _model_checked(_settings()) if explain else _settings()
    resource_type, _, resource_id = resource.partition(":")
    asker = Principal(kind="service", id="cli", scopes=frozenset({"check"}))
    try:
        request = decisions.check_request(
            asker, subject=subject, action=action, resource_type=resource_type,
            resource_id=resource_id or None, context=context, default_context=None,
        )
    except AuthzError as exc:
        raise _fail(f"invalid {exc.field}: {exc.detail}") from None
    runtime = _replica(settings)  # a decision needs the index: the one command here that loads it
    snapshot = runtime.replica.snapshot
    if explain:
        result = decisions.explain(runtime, snapshot, request)
        result["revision"] = snapshot.revision
        typer.echo(json.dumps(result, indent=2))
        allowed = result["allowed"]
    else:
        allowed = decisions.check(snapshot, request)
        typer.echo(f"{'allowed' if allowed else 'denied'} (revision {snapshot.revision})")
    raise typer.Exit(0 if allowed else 2)


@app.command("dev-token")
def dev_token(
    sub: Annotated[str, typer.Option(help="the user id (sub claim)")],
    email: Annotated[str | None, typer.Option(help="email claim")] = None,
    email_verified: Annotated[bool, typer.Option(help="email_verified claim")] = True,
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 3600,
) -> None:
    """Print a user token signed with AUTHZ_JWT_SECRET, for development and tests."""
    import jwt

    settings = _settings()
    if settings.jwt_secret is None:
        raise _fail("AUTHZ_JWT_SECRET is not set; dev tokens are signed with it")
    if settings.is_production:
        raise _fail("dev-token is disabled when AUTHZ_ENV=production")
    claims: dict[str, object] = {"sub": sub, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    if email is not None:
        claims["email"] = email
        claims["email_verified"] = email_verified
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    typer.echo(jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256"))


@keys_app.command("create")
def service_key_create(
    name: Annotated[str, typer.Argument(help="who will use the key")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="check, tokens:resolve, changes:read or admin; repeatable")
    ],
) -> None:
    """Create a service key and print it once (only its hash is stored)."""
    from authz.services.service_keys import create_service_key

    runtime = _store(_settings())
    try:
        written = create_service_key(runtime, cli_principal(), name, scope)
    except AuthzError as exc:
        raise _fail(f"invalid {exc.field}: {exc.detail}") from None
    typer.echo(written.value)
    typer.echo("store this key now: it is not shown again", err=True)


@keys_app.command("list")
def service_key_list() -> None:
    """List service keys (never the keys themselves)."""
    from authz.services.service_keys import list_service_keys

    for key in list_service_keys(_store(_settings())):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        typer.echo(f"{key.id}  {key.name}  {' '.join(key.scopes)}  {key.created_at:%Y-%m-%d}  {state}")


@keys_app.command("revoke")
def service_key_revoke(key_id: Annotated[str, typer.Argument(help="the key id (from list)")]) -> None:
    """Revoke a service key; every replica stops accepting it."""
    from authz.services.service_keys import revoke_service_key

    runtime = _store(_settings())
    try:
        revoke_service_key(runtime, cli_principal(), key_id)
    except AuthzError as exc:
        raise _fail(exc.detail) from None
    typer.echo(f"revoked {key_id}")


def _require_secret_keys(settings: Settings) -> "KeyRing":
    """Stop with a clear message (not a traceback) when the backend-token keys are missing or invalid."""
    from authz.secrets import SecretKeyError, load_key_ring

    try:
        return load_key_ring(settings)
    except SecretKeyError as exc:
        raise _fail(f"cannot start: {exc}") from None


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key; put it first in AUTHZ_SECRET_KEYS, then run `authz secrets rotate`."""
    from authz.secrets import new_key

    typer.echo(new_key())


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored backend token with the newest key (the first of AUTHZ_SECRET_KEYS)."""
    from contextlib import ExitStack

    from authz.services.backend_tokens import rotate_backend_tokens

    settings = _settings()
    runtime = _store(settings, key_ring=_require_secret_keys(settings))
    with ExitStack() as stack:
        bars: list[Any] = []

        def show(done: int, total: int) -> None:
            if not sys.stdout.isatty():
                return
            if not bars:
                bars.append(stack.enter_context(typer.progressbar(length=total, label="re-encrypting backend tokens")))
            if done:
                bars[0].update(1)

        try:
            rotation = rotate_backend_tokens(runtime, cli_principal(), show)
        except AuthzError as exc:
            raise _fail(exc.detail) from None
    typer.echo(f"re-encrypted {rotation.tokens} backend tokens with key {rotation.key_id}")
    if runtime.key_ring is not None and len(runtime.key_ring.key_ids) > 1:
        typer.echo("older keys can now be removed from AUTHZ_SECRET_KEYS")
    runtime.database.dispose()


routes_app = typer.Typer(help="The forward-auth route file (policies/routes.yaml).", no_args_is_help=True)
app.add_typer(routes_app, name="routes")


@routes_app.command("test")
def routes_test(
    method: Annotated[str, typer.Argument(help="HTTP method of the request, e.g. DELETE")],
    path: Annotated[str, typer.Argument(help="its path, e.g. /algorithms/grover (a query string is ignored)")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="policy directory (default: AUTHZ_POLICY_DIR)")
    ] = None,
) -> None:
    """Show what a request maps to through the route file (offline); exit 1 if forward-auth refuses it outright."""
    from authz.policy.route_table import validated_id

    folder = directory or _settings().policy_dir
    try:
        routes = load_policy_dir(folder).routes
    except PolicyInvalid as exc:
        _print_policy_errors(exc)
        raise typer.Exit(1) from None
    request = f"{method.upper()} {path}"
    try:
        found = routes.match(method, path)
        match = validated_id(found) if found is not None else None
    except AuthzError as exc:
        raise _fail(f"{request}: refused, {exc.detail}: denied (403)") from None
    if match is None:
        raise _fail(f"{request}: no route in {routes.source or folder}: denied (403)")
    route = match.route
    if match.resource_id is not None:
        context = "the resource's own"
    elif match.context is not None:
        context = f"path parameter {{{route.context_param}}} = {match.context}"
    else:
        context = "X-Account-Context (personal by default)"
    instance = f":{match.resource_id}" if match.resource_id is not None else " (type-level)"
    typer.echo(f"{request}\n"
               f"  route:    {route.name}  ({route.where})\n"
               f"  resource: {match.resource_type}{instance}\n"
               f"  action:   {match.action}\n"
               f"  context:  {context}")



# ---- organizations (API.md "Organization lifecycle") ------------------------------------------

def _print_org(summary: Any, as_json: bool) -> None:
    import json

    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
        return
    typer.echo(f"{summary.id}  {summary.name}")
    typer.echo(f"  state: {summary.state}" + (f" since {summary.archived_at:%Y-%m-%d %H:%M} by {summary.archived_by};"
                                               f" purged after {summary.purge_after:%Y-%m-%d %H:%M}"
                                               if summary.archived_at else ""))
    typer.echo(f"  created: {summary.created_at:%Y-%m-%d %H:%M}")
    typer.echo(f"  members: {summary.members} (owners: {', '.join(summary.owners) or '-'})")
    typer.echo(f"  resources: {summary.resources}; pending invitations: {summary.pending_invitations}; "
               f"backend tokens: {summary.backend_tokens}")


@orgs_app.command("list")
def orgs_list(
    archived: Annotated[bool, typer.Option("--archived", help="only archived organizations")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every organization with its state (active or archived), members and resources."""
    import json

    from authz.services import lifecycle

    summaries = lifecycle.list_all(_store(_settings()), archived_only=archived)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=2))
        return
    for s in summaries:
        state = (f"archived {s.archived_at:%Y-%m-%d}, purge after {s.purge_after:%Y-%m-%d}" if s.archived_at
                 else "active")
        typer.echo(f"{s.id}  {s.name}  {state}  members={s.members} resources={s.resources}")
    if not summaries:
        typer.echo("no organizations", err=True)


@orgs_app.command("show")
def orgs_show(org_id: OrgArg, as_json: JsonOpt = False) -> None:
    """One organization: state, owners, counts."""
    from authz.services import lifecycle

    runtime = _store(_settings())
    try:
        summary = lifecycle.show(runtime, org_id)
    except AuthzError as exc:
        raise _fail(exc.detail) from None
    _print_org(summary, as_json)


def _org_command(action: str, org_id: str, as_json: bool, **options: bool) -> None:
    """archive, restore or purge ORG_ID as the operator (audited as cli:admin)."""
    import json

    from authz.services import lifecycle, organizations

    runtime = _store(_settings())  # the operator needs no role, so no decision: rows only
    try:
        if action == "archive":
            revision = organizations.delete_organization(runtime, cli_principal(), org_id).revision
        elif action == "restore":
            revision = lifecycle.restore_organization(runtime, cli_principal(), org_id).revision
        else:
            written = lifecycle.purge_organization(runtime, cli_principal(), org_id, now=options.get("now", False))
            revision = written.revision
    except AuthzError as exc:
        raise _fail(exc.detail) from None
    if as_json:
        typer.echo(json.dumps({"organization_id": org_id, "action": action, "revision": revision}))
    else:
        done = {"archive": "archived", "restore": "restored", "purge": "purged"}[action]
        typer.echo(f"{done} {org_id} (revision {revision})")


@orgs_app.command("archive")
def orgs_archive(org_id: OrgArg, as_json: JsonOpt = False) -> None:
    """Archive an organization (what DELETE does): every decision in it is deny; restorable within the retention."""
    _org_command("archive", org_id, as_json)


@orgs_app.command("restore")
def orgs_restore(org_id: OrgArg, as_json: JsonOpt = False) -> None:
    """Restore an archived organization, exactly as it was, within AUTHZ_ORG_RETENTION."""
    _org_command("restore", org_id, as_json)


@orgs_app.command("purge")
def orgs_purge(
    org_id: Annotated[
        str | None, typer.Argument(help="an archived organization; without it: every one past the retention")
    ] = None,
    now: Annotated[bool, typer.Option("--now", help="purge ORG_ID before its retention ends")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete archived organizations for good (audit rows stay); without ORG_ID, those past the retention."""
    import json

    if org_id is not None:
        _org_command("purge", org_id, as_json, now=now)
        return
    if now:
        raise _fail("--now needs an ORG_ID")
    from authz.services import lifecycle

    purged = lifecycle.purge_due(_store(_settings()), cli_principal(), limit=10_000)
    typer.echo(
        json.dumps({"purged": purged}) if as_json else "\n".join(f"purged {p}" for p in purged) or "nothing to purge"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
