"""Quantum backend tokens of an organization or of the caller's personal account, and resolving one for a job."""

from dataclasses import asdict

from fastapi import APIRouter, Response, status

from api.deps import PrincipalDep, RuntimeDep, UserDep, problems, set_revision
from api.schemas import BackendTokenBody, BackendTokenOut, ResolveBody, ResolvedTokenOut
from authz.domain import ids
from authz.domain.principal import Principal
from authz.services import backend_tokens
from authz.services.backend_tokens import BackendTokenView
from authz.services.runtime import Runtime

router = APIRouter(tags=["backend tokens"])
ORG = "/v1/organizations/{org_id}/backend-tokens"
ME = "/v1/me/backend-tokens"


def _out(view: BackendTokenView) -> BackendTokenOut:
    return BackendTokenOut.model_validate(asdict(view))


def _set(runtime: Runtime, principal: Principal, context: str, provider: str, body: BackendTokenBody,
         response: Response) -> BackendTokenOut:
    view = backend_tokens.set_backend_token(runtime, principal, context, provider, body.token.get_secret_value())
    set_revision(response, runtime, None)
    return _out(view)


def _delete(runtime: Runtime, principal: Principal, context: str, provider: str) -> Response:
    backend_tokens.delete_backend_token(runtime, principal, context, provider)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, None)
    return response


@router.get(ORG, response_model=list[BackendTokenOut], responses=problems(401, 403, 404, 422))
def list_org_tokens(org_id: str, runtime: RuntimeDep, principal: UserDep) -> list[BackendTokenOut]:
    return [_out(v) for v in backend_tokens.list_backend_tokens(runtime, principal, ids.org_id(org_id))]


@router.put(ORG + "/{provider}", response_model=BackendTokenOut, responses=problems(400, 401, 403, 404, 413, 422, 503))
def set_org_token(org_id: str, provider: str, body: BackendTokenBody, runtime: RuntimeDep, principal: UserDep,
                  response: Response) -> BackendTokenOut:
    return _set(runtime, principal, ids.org_id(org_id), provider, body, response)


@router.delete(ORG + "/{provider}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(401, 403, 404, 422, 503))
def delete_org_token(org_id: str, provider: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    return _delete(runtime, principal, ids.org_id(org_id), provider)


@router.get(ME, response_model=list[BackendTokenOut], responses=problems(401, 403))
def list_my_tokens(runtime: RuntimeDep, principal: UserDep) -> list[BackendTokenOut]:
    return [_out(v) for v in backend_tokens.list_backend_tokens(runtime, principal, ids.personal_context(principal.id))]


@router.put(ME + "/{provider}", response_model=BackendTokenOut, responses=problems(400, 401, 403, 413, 422, 503))
def set_my_token(provider: str, body: BackendTokenBody, runtime: RuntimeDep, principal: UserDep,
                 response: Response) -> BackendTokenOut:
    return _set(runtime, principal, ids.personal_context(principal.id), provider, body, response)


@router.delete(ME + "/{provider}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404, 422, 503))
def delete_my_token(provider: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    return _delete(runtime, principal, ids.personal_context(principal.id), provider)


@router.post("/v1/backend-tokens/resolve", response_model=ResolvedTokenOut,
             responses=problems(400, 401, 403, 404, 413, 422, 503))
def resolve_token(
    body: ResolveBody, runtime: RuntimeDep, principal: PrincipalDep, response: Response
) -> ResolvedTokenOut:
    """For a service key with `tokens:resolve`: the secret, when the user may `use` it there. Audited."""
    token = backend_tokens.resolve_backend_token(runtime, principal, body.user_id, body.context, body.provider)
    response.headers["Cache-Control"] = "no-store"
    return ResolvedTokenOut(token=token)
