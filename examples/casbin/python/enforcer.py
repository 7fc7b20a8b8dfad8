"""A stock pycasbin enforcer over authz's rules, as another service would build one."""

import casbin


def domain_matches(request_domain: str, stored_domain: str) -> bool:
    """Only the stored "*" is a wildcard; ids from requests are compared as data."""
    return stored_domain == "*" or stored_domain == request_domain


def enforcer(model_path: str, adapter: object) -> casbin.Enforcer:
    """`adapter`: any pycasbin adapter over the casbin_rule table (e.g. sqlalchemy-adapter)."""
    built = casbin.Enforcer(model_path, adapter)
    built.add_named_domain_matching_func("g", domain_matches)
    built.load_policy()
    return built
