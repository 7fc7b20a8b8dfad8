"""The policy in force, and reloading it from policies/ (admin service keys)."""

from fastapi import APIRouter, Response

from api.deps import PrincipalDep, RuntimeDep, problems, set_revision
from api.schemas import PolicyOut, PolicyReloadOut
from authz.domain.errors import Forbidden
from authz.domain.principal import SCOPE_ADMIN, Principal
from authz.services import policy_admin

router = APIRouter(prefix="/v1/policy", tags=["policy"])


def _require_admin(principal: Principal) -> None:
    if not principal.has_scope(SCOPE_ADMIN) or principal.is_user:
        raise Forbidden("this endpoint needs a service key with the `admin` scope")


@router.get("", response_model=PolicyOut, responses=problems(401, 403))
def get_policy(runtime: RuntimeDep, principal: PrincipalDep) -> PolicyOut:
    _require_admin(principal)
    return PolicyOut.model_validate(policy_admin.policy_in_force(runtime))


@router.post("/reload", response_model=PolicyReloadOut, responses=problems(401, 403, 422, 503))
def reload_policy(runtime: RuntimeDep, principal: PrincipalDep, response: Response) -> PolicyReloadOut:
    _require_admin(principal)
    written = policy_admin.reload_policy(runtime, principal)
    set_revision(response, runtime, written.revision)
    return PolicyReloadOut(
        revision=written.revision if written.revision is not None else runtime.replica.revision,
        added=[list(rule) for rule in written.value.added],
        removed=[list(rule) for rule in written.value.removed],
    )
