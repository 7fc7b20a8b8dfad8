"""Invitations: owners invite, resend and revoke; the invited person accepts or declines."""

from dataclasses import asdict

from fastapi import APIRouter, Request, Response, status

from api.deps import PageCursor, PageLimit, RuntimeDep, UserDep, link_next, problems, set_revision
from api.problems import error_body
from api.schemas import (
    BulkResult,
    InvitationAcceptedOut,
    InvitationBulk,
    InvitationBulkOut,
    InvitationCreate,
    InvitationOut,
    InvitationTokenBody,
    MyInvitationOut,
)
from authz.domain.errors import TooManyRequests
from authz.services import invitations
from authz.services.invitations import InvitationView

router = APIRouter(tags=["invitations"])


def _out(view: InvitationView) -> InvitationOut:
    return InvitationOut.model_validate(asdict(view))


def _wake_mail_sender(request: Request) -> None:
    """Deliver the new email now rather than at the sender's next poll."""
    sender = getattr(request.app.state, "mail_sender", None)
    if sender is not None:
        sender.wake()


@router.post("/v1/organizations/{org_id}/invitations", status_code=status.HTTP_201_CREATED,
             response_model=InvitationOut, responses=problems(400, 401, 403, 404, 409, 413, 422, 429, 503))
def create_invitation(org_id: str, body: InvitationCreate, request: Request, runtime: RuntimeDep,
                      principal: UserDep, response: Response) -> InvitationOut:
    written = invitations.create_invitation(runtime, principal, org_id, body.email, body.role, body.expires_at)
    _wake_mail_sender(request)
    set_revision(response, runtime, written.revision)
    response.headers["Location"] = f"/v1/organizations/{org_id}/invitations/{written.value.id}"
    return _out(written.value)


@router.post("/v1/organizations/{org_id}/invitations:bulk", response_model=InvitationBulkOut,
             responses=problems(400, 401, 403, 404, 413, 422, 503))
def create_invitations(org_id: str, body: InvitationBulk, request: Request, runtime: RuntimeDep,
                       principal: UserDep, response: Response) -> InvitationBulkOut:
    """Up to 100 invitations; `results[i]` answers `invitations[i]` (201 with the invitation, or a problem)."""
    results = invitations.create_invitations(runtime, principal, org_id, body.invitations)
    _wake_mail_sender(request)
    set_revision(response, runtime, None)
    out: list[BulkResult] = []
    retry_after = 0
    for result in results:
        if isinstance(result, InvitationView):
            out.append(BulkResult(status=201, invitation=_out(result)))
        else:
            problem = error_body(result)
            out.append(BulkResult(status=problem["status"], problem=problem))
            if isinstance(result, TooManyRequests):
                retry_after = max(retry_after, result.retry_after)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return InvitationBulkOut(results=out)


@router.post("/v1/organizations/{org_id}/members/{user_id}/reinstate", status_code=status.HTTP_201_CREATED,
             response_model=InvitationOut, responses=problems(401, 403, 404, 409, 422, 429, 503))
def reinstate_member(org_id: str, user_id: str, request: Request, runtime: RuntimeDep, principal: UserDep,
                     response: Response) -> InvitationOut:
    """An invitation for a member removed or gone in the last 90 days, with the role they had."""
    written = invitations.reinstate_member(runtime, principal, org_id, user_id)
    _wake_mail_sender(request)
    set_revision(response, runtime, written.revision)
    response.headers["Location"] = f"/v1/organizations/{org_id}/invitations/{written.value.id}"
    return _out(written.value)


@router.get("/v1/organizations/{org_id}/invitations", response_model=list[InvitationOut],
            responses=problems(400, 401, 403, 404, 422))
def list_invitations(org_id: str, runtime: RuntimeDep, principal: UserDep, request: Request, response: Response,
                     limit: PageLimit = 1000, cursor: PageCursor = None) -> list[InvitationOut]:
    """Invitations ordered by id, `limit` at a time; `Link: <...>; rel="next"` while more follow."""
    page = invitations.invitations_page(runtime, principal, org_id, limit=limit, cursor=cursor)
    link_next(request, response, page.next_cursor, limit)
    return [_out(view) for view in page.items]


@router.post("/v1/organizations/{org_id}/invitations/{invitation_id}/resend", response_model=InvitationOut,
             responses=problems(401, 403, 404, 409, 422, 503))
def resend_invitation(org_id: str, invitation_id: str, request: Request, runtime: RuntimeDep,
                      principal: UserDep, response: Response) -> InvitationOut:
    written = invitations.resend_invitation(runtime, principal, org_id, invitation_id)
    _wake_mail_sender(request)
    set_revision(response, runtime, written.revision)
    return _out(written.value)


@router.delete("/v1/organizations/{org_id}/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(401, 403, 404, 409, 422, 503))
def revoke_invitation(org_id: str, invitation_id: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    written = invitations.revoke_invitation(runtime, principal, org_id, invitation_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response


@router.post("/v1/invitations/accept", response_model=InvitationAcceptedOut,
             responses=problems(400, 401, 403, 404, 409, 410, 422, 503))
def accept_invitation(body: InvitationTokenBody, runtime: RuntimeDep, principal: UserDep,
                      response: Response) -> InvitationAcceptedOut:
    written = invitations.accept_invitation(runtime, principal, body.token)
    set_revision(response, runtime, written.revision)
    return InvitationAcceptedOut.model_validate(asdict(written.value))


@router.post("/v1/invitations/decline", status_code=status.HTTP_204_NO_CONTENT,
             responses=problems(400, 401, 403, 404, 409, 410, 422, 503))
def decline_invitation(body: InvitationTokenBody, runtime: RuntimeDep, principal: UserDep) -> Response:
    written = invitations.decline_invitation(runtime, principal, body.token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response


@router.get("/v1/me/invitations", response_model=list[MyInvitationOut], responses=problems(401, 403))
def my_invitations(runtime: RuntimeDep, principal: UserDep) -> list[MyInvitationOut]:
    return [MyInvitationOut.model_validate(asdict(view)) for view in invitations.my_invitations(runtime, principal)]
