"""Runs one of the Athena queries in this directory on exported audit lines
with DuckDB, as the tests do: the stand-in for Athena that needs no AWS.

    python athena/run_duckdb.py <export root> <query.sql> <from day> <to day>

<export root> holds what the audit-export Lambda writes to S3
(audit/day=YYYY-MM-DD/*.json). Prints the rows as a JSON list of objects.
"""

import json
import sys

import duckdb

# The Glue table's columns (template.yaml, AuditGlueTable), in DuckDB types.
COLUMNS = {
    "event_id": "VARCHAR",
    "request_id": "VARCHAR",
    "at": "VARCHAR",
    "at_ms": "BIGINT",
    "actor": "VARCHAR",
    "action": "VARCHAR",
    "from_status": "VARCHAR",
    "to_status": "VARCHAR",
    "source": "VARCHAR",
    "code": "VARCHAR",
    "entitlement": "VARCHAR",
    "requester": "VARCHAR",
    "groups": "VARCHAR",
    "created_at_ms": "BIGINT",
    "duration_secs": "BIGINT",
    "granted_at_ms": "BIGINT",
    "expires_at_ms": "BIGINT",
}


def main() -> None:
    root, query, from_day, to_day = sys.argv[1:5]
    con = duckdb.connect()
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    con.execute(
        "CREATE VIEW audit_events AS SELECT * FROM read_json("
        f"'{root}/audit/*/*.json', format = 'newline_delimited', columns = {cols}, "
        "hive_partitioning = true, hive_types = {'day': 'VARCHAR'})"
    )
    with open(query, encoding="utf-8") as f:
        sql = f.read()
    cur = con.execute(sql, [from_day, to_day])
    names = [d[0] for d in cur.description]
    print(json.dumps([dict(zip(names, row)) for row in cur.fetchall()]))


if __name__ == "__main__":
    main()
