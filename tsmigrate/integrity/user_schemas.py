"""Which schemas of the catalog are the user's: the checks of structure and objects look at those only."""

from __future__ import annotations

from psycopg import sql

from ..tool_objects import OWN_SCHEMA

# Schemas that are not the user's: catalogs, TimescaleDB's own and chunks, our bookkeeping.
NOT_USER_SCHEMA = sql.SQL("""(n.nspname IN ('pg_catalog', 'information_schema', 'timescaledb_information',
                                            'timescaledb_experimental', {own})
                              OR n.nspname LIKE 'pg\\_%%' OR n.nspname LIKE '\\_timescaledb%%')""").format(
    own=sql.Literal(OWN_SCHEMA)
)
