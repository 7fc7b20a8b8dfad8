"""Organizations and their members."""

from dataclasses import asdict

from fastapi import APIRouter, Request, Response, status

from api.deps import PageCursor, PageLimit, RuntimeDep, UserDep, link_next, problems, set_revision
from api.schemas import (
    MemberOut,
    MemberPatch,
    OrganizationCreate,
    OrganizationOut,
    OrganizationPatch,
    TransferBody,
    TransferOut,
)
from api.staleness import require_fresh
from authz.services import lifecycle, members, organizations
from authz.services.views import MemberView, OrganizationView

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])


def _out(view: OrganizationView) -> OrganizationOut:
    data = asdict(view)
    return OrganizationOut.model_validate(data)


def _member(view: MemberView) -> MemberOut:
    return MemberOut.model_validate(asdict(view))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrganizationOut,
             responses=problems(400, 401, 403, 413, 422, 503))
def create_organization(
    body: OrganizationCreate, runtime: RuntimeDep, principal: UserDep, response: Response
) -> OrganizationOut:
    written = organizations.create_organization(
        runtime, principal, body.name, body.billing_address.model_dump(exclude_none=True)
    )
    set_revision(response, runtime, written.revision)
    response.headers["Location"] = f"/v1/organizations/{written.value.id}"
    return _out(written.value)


@router.get("", response_model=list[OrganizationOut], responses=problems(401, 403, 503))
def list_organizations(runtime: RuntimeDep, principal: UserDep) -> list[OrganizationOut]:
    require_fresh(runtime)  # the caller's roles come from this replica's memory
    return [_out(org) for org in organizations.list_organizations(runtime, principal)]


@router.get("/{org_id}", response_model=OrganizationOut, responses=problems(401, 403, 404, 422))
def get_organization(org_id: str, runtime: RuntimeDep, principal: UserDep) -> OrganizationOut:
    return _out(organizations.get_organization(runtime, principal, org_id))


@router.patch("/{org_id}", response_model=OrganizationOut, responses=problems(400, 401, 403, 404, 422, 503))
def update_organization(
    org_id: str, body: OrganizationPatch, runtime: RuntimeDep, principal: UserDep, response: Response
) -> OrganizationOut:
    address = body.billing_address.model_dump(exclude_none=True) if body.billing_address else None
    written = organizations.update_organization(runtime, principal, org_id, name=body.name, address=address)
    set_revision(response, runtime, written.revision)
    return _out(written.value)


@router.delete("/{org_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404, 422, 503))
def delete_organization(org_id: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    """Archives the org: gone for everyone at once, restorable by its owners for AUTHZ_ORG_RETENTION."""
    written = organizations.delete_organization(runtime, principal, org_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response


@router.post("/{org_id}/restore", response_model=OrganizationOut, responses=problems(401, 403, 404, 409, 410, 422, 503))
def restore_organization(org_id: str, runtime: RuntimeDep, principal: UserDep, response: Response) -> OrganizationOut:
    """An archived org back as it was (a user who was an owner when it was archived; anyone else 404)."""
    written = lifecycle.restore_organization(runtime, principal, org_id)
    set_revision(response, runtime, written.revision)
    return _out(written.value)


@router.post("/{org_id}/transfer", response_model=TransferOut, responses=problems(400, 401, 403, 404, 409, 422, 503))
def transfer_ownership(org_id: str, body: TransferBody, runtime: RuntimeDep, principal: UserDep,
                       response: Response) -> TransferOut:
    """The named member becomes owner and the caller maintainer, in one revision."""
    written = members.transfer_ownership(runtime, principal, org_id, body.to_user_id)
    set_revision(response, runtime, written.revision)
    return TransferOut(organization_id=org_id, owner=written.value, revision=written.revision)


@router.get("/{org_id}/members", response_model=list[MemberOut], responses=problems(400, 401, 403, 404, 422))
def list_members(org_id: str, runtime: RuntimeDep, principal: UserDep, request: Request, response: Response,
                 limit: PageLimit = 1000, cursor: PageCursor = None) -> list[MemberOut]:
    """Members ordered by user id, `limit` at a time; `Link: <...>; rel="next"` while more follow."""
    page = members.members_page(runtime, principal, org_id, limit=limit, cursor=cursor)
    link_next(request, response, page.next_cursor, limit)
    return [_member(m) for m in page.items]


@router.patch("/{org_id}/members/{user_id}", response_model=MemberOut,
              responses=problems(400, 401, 403, 404, 409, 422, 503))
def change_role(
    org_id: str, user_id: str, body: MemberPatch, runtime: RuntimeDep, principal: UserDep, response: Response
) -> MemberOut:
    expires_at = body.expires_at if "expires_at" in body.model_fields_set else members.UNCHANGED
    written = members.change_role(runtime, principal, org_id, user_id, body.role, expires_at)
    set_revision(response, runtime, written.revision)
    return _member(written.value)


@router.delete("/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(401, 403, 404, 409, 422, 503))
def remove_member(org_id: str, user_id: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    written = members.remove_member(runtime, principal, org_id, user_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response
