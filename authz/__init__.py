"""authz: organizations, memberships and authorization decisions for the platform."""
