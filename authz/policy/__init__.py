"""Policy as data: policies/*.yaml → validated roles and permissions → Casbin rules."""
