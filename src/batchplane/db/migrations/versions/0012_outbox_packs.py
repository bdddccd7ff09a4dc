"""outbox packs: one row per transaction's Kafka records instead of one per record

The relays of this release drain `outbox` (rows queued by an older release still
running during the upgrade) and `outbox_packs`; older relays read `outbox` only, so
they never see a pack. `outbox` is kept for that overlap and can go in a later
release.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_packs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("records", sa.LargeBinary(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_packs")),
    )


def downgrade() -> None:
    # Packs not yet published would be lost with the table, and an older release
    # cannot read them: refuse until the relays have drained them.
    pending = op.get_bind().execute(sa.text("SELECT count(*) FROM outbox_packs")).scalar_one()
    if pending:
        raise RuntimeError(
            f"outbox_packs holds {pending} unpublished packs; let the relays drain them first"
        )
    op.drop_table("outbox_packs")
