"""GET /v1/me: the caller and the contexts it may act in."""

from fastapi import APIRouter

from api.deps import RuntimeDep, UserDep, problems
from api.schemas import ContextOut, MeOut
from api.staleness import require_fresh
from authz.services import organizations

router = APIRouter(prefix="/v1", tags=["you"])


@router.get("/me", response_model=MeOut, responses=problems(401, 403, 503))
def me(runtime: RuntimeDep, principal: UserDep) -> MeOut:
    require_fresh(runtime)  # the contexts come from this replica's memory: not from stale data
    contexts = [ContextOut(type="personal", id="personal")]
    contexts += [
        ContextOut(type="organization", id=org.id, name=org.name, role=org.role)
        for org in organizations.list_organizations(runtime, principal)
    ]
    return MeOut(user_id=principal.id, email=principal.email, contexts=contexts)
