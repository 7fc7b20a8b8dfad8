"""Content registered in the current context, and the roles on one resource."""

from dataclasses import asdict

from fastapi import APIRouter, Response, status

from api.deps import ContextDep, RuntimeDep, UserDep, problems, set_revision
from api.schemas import ResourceCreate, ResourceMemberOut, ResourceOut, ResourceRoleBody
from authz.services import resources

router = APIRouter(prefix="/v1/resources", tags=["resources"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ResourceOut,
             responses=problems(400, 401, 403, 404, 409, 413, 422, 503))
def register_resource(
    body: ResourceCreate, runtime: RuntimeDep, principal: UserDep, context: ContextDep, response: Response
) -> ResourceOut:
    written = resources.register_resource(runtime, principal, context, body.type, body.id)
    set_revision(response, runtime, written.revision)
    response.headers["Location"] = f"/v1/resources/{written.value.type}/{written.value.id}"
    return ResourceOut.model_validate(asdict(written.value))


@router.get("/{resource_type}/{resource_id}", response_model=ResourceOut, responses=problems(401, 403, 404, 422))
def get_resource(resource_type: str, resource_id: str, runtime: RuntimeDep, principal: UserDep) -> ResourceOut:
    return ResourceOut.model_validate(asdict(resources.get_resource(runtime, principal, resource_type, resource_id)))


@router.delete("/{resource_type}/{resource_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(401, 403, 404, 422, 503))
def delete_resource(resource_type: str, resource_id: str, runtime: RuntimeDep, principal: UserDep) -> Response:
    written = resources.delete_resource(runtime, principal, resource_type, resource_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response


@router.get("/{resource_type}/{resource_id}/members", response_model=list[ResourceMemberOut],
            responses=problems(401, 403, 404, 422))
def list_resource_members(
    resource_type: str, resource_id: str, runtime: RuntimeDep, principal: UserDep
) -> list[ResourceMemberOut]:
    found = resources.list_resource_members(runtime, principal, resource_type, resource_id)
    return [ResourceMemberOut.model_validate(member) for member in found]


@router.put("/{resource_type}/{resource_id}/members/{user_id}", response_model=ResourceMemberOut,
            responses=problems(400, 401, 403, 404, 422, 503))
def set_resource_role(
    resource_type: str, resource_id: str, user_id: str, body: ResourceRoleBody,
    runtime: RuntimeDep, principal: UserDep, response: Response,
) -> ResourceMemberOut:
    written = resources.set_resource_role(runtime, principal, resource_type, resource_id, user_id, body.role,
                                          body.expires_at)
    set_revision(response, runtime, written.revision)
    return ResourceMemberOut.model_validate(written.value)


@router.delete("/{resource_type}/{resource_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(401, 403, 404, 422, 503))
def remove_resource_role(
    resource_type: str, resource_id: str, user_id: str, runtime: RuntimeDep, principal: UserDep
) -> Response:
    written = resources.remove_resource_role(runtime, principal, resource_type, resource_id, user_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_revision(response, runtime, written.revision)
    return response
