"""Runs statements as one user through psycopg 3 (PostgreSQL port) and ADBC Flight SQL (the
Flight SQL port), for the privilege matrix test (tests/e2e/privileges.rs).

    privilege_client.py {psycopg|adbc} HOST PG_PORT FLIGHT_SQL_PORT USER PASSWORD

Reads a JSON list of SQL statements on stdin; prints a JSON list with one outcome per
statement, run in order on one connection of the chosen client: "ok" or the
statement's SQLSTATE (psycopg: `e.sqlstate`; ADBC: the SQLSTATE the server puts in the
error's message). Autocommit: each statement is its own transaction.
"""

import json
import re
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import psycopg

CLIENT, HOST, PG_PORT, FLIGHT_PORT, USER, PASSWORD = sys.argv[1:7]
STATEMENTS = json.load(sys.stdin)


def via_psycopg():
    out = []
    with psycopg.connect(
        host=HOST, port=int(PG_PORT), user=USER, password=PASSWORD, dbname="dev",
        autocommit=True, connect_timeout=30,
    ) as conn:
        for sql in STATEMENTS:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    if cur.description is not None:
                        cur.fetchall()
                out.append("ok")
            except psycopg.Error as e:
                out.append(e.sqlstate or f"no sqlstate: {e}")
    return out


def adbc_sqlstate(e):
    # Blueshift's Flight SQL errors end with "(SQLSTATE xxxxx)"; the driver keeps the text.
    m = re.search(r"SQLSTATE ([0-9A-Z]{5})", str(e))
    return m.group(1) if m else f"no sqlstate: {e}"


def via_adbc():
    out = []
    with flightsql.connect(
        f"grpc://{HOST}:{FLIGHT_PORT}",
        db_kwargs={"username": USER, "password": PASSWORD},
        autocommit=True,
    ) as conn:
        for sql in STATEMENTS:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    try:
                        cur.fetch_arrow_table()
                    except adbc_driver_manager.ProgrammingError:
                        # A statement without a result set.
                        pass
                out.append("ok")
            except adbc_driver_manager.Error as e:
                out.append(adbc_sqlstate(e))
    return out


print(json.dumps({"psycopg": via_psycopg, "adbc": via_adbc}[CLIENT]()))
