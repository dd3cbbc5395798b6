"""Python clients against a live Blueshift cluster, for the client-matrix test
(tests/e2e/clients.rs). Each client connects, creates its own table, loads rows, queries with
parameters, browses the metadata and asserts the values it gets back.

    python_clients.py HOST PORT USER PASSWORD CLIENT [CLIENT ...]

CLIENT is one of: psycopg, sqlalchemy-psycopg, sqlalchemy-redshift, redshift-connector,
redshift-connector-tls. Prints `ok CLIENT` for each; exits 1 with the failure otherwise.
"""

import datetime
import decimal
import sys
import threading
import time
import traceback

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DATABASE = "dev"

ROWS = [
    (1, "alpha", decimal.Decimal("10.50"), datetime.date(2024, 1, 1)),
    (2, "beta", decimal.Decimal("20.25"), datetime.date(2024, 2, 29)),
    (3, None, None, None),
]


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def create_table(execute, name):
    execute(f"drop table if exists {name}")
    execute(
        f"create table {name} (id integer not null, name varchar(20), "
        f"amount decimal(10,2), day date) distkey(id) sortkey(id)"
    )


def psycopg_client():
    import psycopg
    from psycopg import errors

    conn = psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD or None, dbname=DATABASE,
        autocommit=True,
    )
    cur = conn.cursor()
    create_table(cur.execute, "py_psycopg")
    # cursor.copy: COPY FROM STDIN, rows written by the driver.
    with cur.copy("COPY py_psycopg (id, name, amount, day) FROM STDIN") as copy:
        for row in ROWS:
            copy.write_row(row)
    expect(cur.rowcount, 3, "COPY row count")
    # cursor.copy: COPY TO STDOUT, rows parsed by the driver from the text format.
    with cur.copy("COPY (select id, name, day from py_psycopg order by id) TO STDOUT") as copy:
        copy.set_types(["int4", "text", "date"])
        got = list(copy.rows())
    expect(got, [(r[0], r[1], r[3]) for r in ROWS], "COPY TO STDOUT rows")

    # Parameters, text results.
    cur.execute("select name, amount, day from py_psycopg where id = %s", (2,))
    expect(cur.fetchall(), [("beta", decimal.Decimal("20.25"), datetime.date(2024, 2, 29))],
           "row by parameter")

    # Binary results.
    bcur = conn.cursor(binary=True)
    bcur.execute("select id, name, amount, day from py_psycopg where id <= %s order by id", (3,))
    expect(bcur.fetchall(), ROWS, "binary rows")

    # DELETE / UPDATE with parameters (extended protocol), row counts as PostgreSQL's; a
    # transaction block (psycopg's own, autocommit off) that rolls back leaves nothing.
    cur.execute("create table py_dml as select * from py_psycopg")
    cur.execute("update py_dml set name = %s where id = %s", ("BETA", 2))
    expect((cur.rowcount, cur.statusmessage), (1, "UPDATE 1"), "UPDATE with parameters")
    cur.execute("delete from py_dml where id >= %s", (3,))
    expect((cur.rowcount, cur.statusmessage), (1, "DELETE 1"), "DELETE with parameters")
    tx = psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD or None, dbname=DATABASE)
    with tx.cursor() as t:
        t.execute("delete from py_dml where id = %s", (1,))
        t.execute("select count(*) from py_dml")
        expect(t.fetchone(), (1,), "the block sees its own DELETE")
        cur.execute("select count(*) from py_dml")
        expect(cur.fetchone(), (2,), "another session does not")
    tx.rollback()
    tx.close()
    cur.execute("select id, name from py_dml order by id")
    expect(cur.fetchall(), [(1, "alpha"), (2, "BETA")], "after the rollback")
    cur.execute("drop table py_dml")
    # Binary results of every other column type.
    cur.execute("drop table if exists py_types")
    cur.execute(
        "create table py_types (s smallint, b bigint, d double precision, r real, "
        "f boolean, t timestamp, tz timestamptz, v varchar(5))")
    cur.execute(
        "insert into py_types values (7, 8, 1.5, 2.5, true, '2024-01-01 10:00:00', "
        "'2024-01-01 10:00:00+00', 'x')")
    bcur.execute("select s, b, d, r, f, t, tz, v from py_types")
    expect(bcur.fetchone(), (
        7, 8, 1.5, 2.5, True,
        datetime.datetime(2024, 1, 1, 10, 0),
        datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone.utc),
        "x",
    ), "binary values of each column type")

    # More than 5 executions of one statement: psycopg prepares it server-side after 5.
    for i in range(1, 9):
        key = (i % 3) + 1
        cur.execute("select count(*) from py_psycopg where id <= %s", (key,))
        expect(cur.fetchone()[0], key, f"prepared execution {i}")

    # Metadata.
    cur.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'public' and table_name = %s", ("py_psycopg",))
    expect(cur.fetchall(), [("py_psycopg",)], "information_schema.tables")
    cur.execute(
        "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
        "from pg_catalog.pg_attribute a join pg_catalog.pg_class c on a.attrelid = c.oid "
        "where c.relname = %s and a.attnum > 0 order by a.attnum", ("py_psycopg",))
    expect([r[0] for r in cur.fetchall()], ["id", "name", "amount", "day"], "pg_attribute")

    # Cancel a running statement; the session stays usable.
    slow = psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD or None, dbname=DATABASE,
        autocommit=True,
    )
    timer = threading.Timer(0.5, slow.cancel)
    timer.start()
    started = time.monotonic()
    try:
        slow.execute(
            "select count(*) from generate_series(1, 2000000000) a(x) where x % 7 = 3")
        raise AssertionError("the slow query was not cancelled")
    except errors.QueryCanceled:
        pass
    finally:
        timer.cancel()
    if time.monotonic() - started > 30:
        raise AssertionError("cancel took more than 30 s")
    expect(slow.execute("select 1").fetchone(), (1,), "query after cancel")
    slow.close()
    conn.close()


def sqlalchemy_client(url, table):
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as c:
        c = c.execution_options(isolation_level="AUTOCOMMIT")
        create_table(lambda s: c.execute(sa.text(s)), table)
        c.execute(
            sa.text(f"insert into {table} (id, name, amount, day) values (:id, :name, :amount, :day)"),
            [dict(zip(("id", "name", "amount", "day"), r)) for r in ROWS],
        )
        got = c.execute(sa.text(f"select name from {table} where id = :id"), {"id": 1}).all()
        expect([tuple(r) for r in got], [("alpha",)], "select by parameter")
        expect(c.execute(sa.text(f"select count(*) from {table}")).scalar(), 3, "count")
    insp = sa.inspect(engine)
    names = insp.get_table_names()
    if table not in names:
        raise AssertionError(f"get_table_names: {table} not in {names}")
    cols = insp.get_columns(table)
    expect([c["name"] for c in cols], ["id", "name", "amount", "day"], "get_columns names")
    types = {c["name"]: c["type"] for c in cols}
    if not isinstance(types["id"], sa.Integer):
        raise AssertionError(f"id type {types['id']!r}")
    if not isinstance(types["day"], sa.Date):
        raise AssertionError(f"day type {types['day']!r}")
    if not isinstance(types["amount"], sa.Numeric):
        raise AssertionError(f"amount type {types['amount']!r}")
    expect(cols[0]["nullable"], False, "id nullable")
    expect(cols[1]["nullable"], True, "name nullable")
    engine.dispose()


def pandas_client():
    """DataFrame.to_sql(method="multi") through SQLAlchemy (inside SQLAlchemy's transaction:
    CREATE TABLE and the INSERTs commit together) and read_sql back."""
    import datetime

    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}")
    frame = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "name": ["alpha", None, "gamma", "delta"],
        "score": [1.5, 2.25, None, -4.0],
        "flag": [True, False, True, False],
        "ts": [datetime.datetime(2024, 1, 1, 12, 30), datetime.datetime(2024, 2, 29), None,
               datetime.datetime(1999, 12, 31, 23, 59, 59)],
    })
    # (to_sql's return value is SQLAlchemy's rowcount, which it reports as -1 for a
    # multi-row VALUES insert; the rows are checked by reading them back.)
    frame.to_sql("py_pandas", engine, index=False, method="multi")
    back = pd.read_sql("select * from py_pandas order by id", engine)
    expect(list(back.columns), list(frame.columns), "read_sql columns")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    frame.to_sql("py_pandas", engine, index=False, method="multi", if_exists="append",
                 chunksize=3)
    got = pd.read_sql("select id, count(*) as n from py_pandas group by id order by id", engine)
    expect(got["n"].tolist(), [2, 2, 2, 2], "appended rows")
    engine.dispose()


def redshift_connector_client(ssl):
    import redshift_connector

    table = "py_rsc_tls" if ssl else "py_rsc"
    conn = redshift_connector.connect(
        host=HOST, port=PORT, database=DATABASE, user=USER, password=PASSWORD,
        ssl=ssl, sslmode="require" if ssl else "disable",
    )
    conn.autocommit = True
    cur = conn.cursor()
    create_table(cur.execute, table)
    cur.executemany(
        f"insert into {table} (id, name, amount, day) values (%s, %s, %s, %s)", ROWS)
    cur.execute(f"select id, name, amount, day from {table} where id >= %s order by id", (2,))
    expect([tuple(r) for r in cur.fetchall()], ROWS[1:], "rows by parameter")

    tables = cur.get_tables(schema_pattern="public", table_name_pattern=table)
    names = [r[2] for r in tables]
    expect(names, [table], "get_tables")
    cols = cur.get_columns(schema_pattern="public", tablename_pattern=table)
    expect([r[3] for r in cols], ["id", "name", "amount", "day"], "get_columns")
    conn.close()


CLIENTS = {
    "psycopg": psycopg_client,
    "sqlalchemy-psycopg": lambda: sqlalchemy_client(
        f"postgresql+psycopg://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}", "py_sa_pg"),
    # sqlalchemy-redshift's dialect over redshift_connector (Redshift's pg_class and
    # pg_attribute columns, svv_external_* views, WHERE naming select-list aliases).
    "sqlalchemy-redshift": lambda: sqlalchemy_client(
        f"redshift+redshift_connector://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}"
        "?sslmode=disable&ssl=False", "py_sa_rs"),
    "pandas": pandas_client,
    "redshift-connector": lambda: redshift_connector_client(False),
    "redshift-connector-tls": lambda: redshift_connector_client(True),
}


def main():
    failed = False
    for name in sys.argv[5:]:
        try:
            CLIENTS[name]()
            print(f"ok {name}", flush=True)
        except Exception:
            failed = True
            print(f"FAILED {name}:\n{traceback.format_exc()}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
