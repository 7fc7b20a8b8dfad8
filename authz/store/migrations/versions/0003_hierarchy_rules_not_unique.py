"""a role may inherit several roles: the one-role-per-subject index skips the "*" domain

One role per subject per domain holds for memberships and per-resource roles. The role
hierarchy (`g, <role>, <inherited role>, *`) may name several inherited roles for one
role; the partial unique index refused the second one (an IntegrityError on apply).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OLD_WHERE = "ptype = 'g'"
NEW_WHERE = "ptype = 'g' AND v2 <> '*'"


def _replace_index(old: str, new: str) -> None:
    with op.batch_alter_table('casbin_rule', schema=None) as batch_op:
        batch_op.drop_index('uq_casbin_rule_g_subject_domain', sqlite_where=sa.text(old), postgresql_where=sa.text(old))
        batch_op.create_index('uq_casbin_rule_g_subject_domain', ['v0', 'v2'], unique=True,
                              sqlite_where=sa.text(new), postgresql_where=sa.text(new))


def upgrade() -> None:
    _replace_index(OLD_WHERE, NEW_WHERE)


def downgrade() -> None:
    _replace_index(NEW_WHERE, OLD_WHERE)
