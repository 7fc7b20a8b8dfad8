"""The client package's namespace: every exported name resolves, and the decision index comes alone."""

import subprocess
import sys

import authz_client


def test_every_exported_name_resolves_to_its_object() -> None:
    for name in authz_client.__all__:
        value = getattr(authz_client, name)
        assert value.__name__ == name, name
        assert value.__module__.startswith("authz_client."), name
    assert set(authz_client.__all__) == set(authz_client._HOMES)


def test_the_decision_index_imports_neither_the_http_clients_nor_httpx() -> None:
    """The server imports `authz_client.decisions` in every process (the CLI, `authz serve`): it must not
    pay for the HTTP clients it does not use."""
    probe = ("import sys, authz_client.decisions; "
             "print(sorted(m for m in sys.modules if m == 'httpx' or m in ('authz_client.sync', 'authz_client.aio')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
