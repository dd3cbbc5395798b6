"""ADBC Flight SQL (adbc-driver-flightsql) against a live Blueshift cluster's Flight SQL port,
for the client-matrix test (tests/e2e/clients.rs); and pyarrow's plain Flight client for what
ADBC does not expose: GetSchema, and fetching the same ticket twice.

    adbc_client.py HOST FLIGHT_SQL_PORT USER PASSWORD

Logs in (Basic auth, then the bearer token), creates a table, loads rows with a
parameterized INSERT, queries to Arrow (plain and with a parameter), fetches the same
ticket twice, and browses adbc_get_objects / adbc_get_table_schema. A wrong password must
fail. Prints `ok adbc` or raises.
"""

import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
URI = f"grpc://{HOST}:{PORT}"


def expect(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def connect(user, password):
    return flightsql.connect(
        URI,
        db_kwargs={"username": user, "password": password},
        autocommit=True,
    )


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def statement_command(sql):
    """Any(CommandStatementQuery{query: sql}), encoded by hand (no Flight SQL protos here)."""
    inner = _field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(1, type_url) + _field(2, inner)


def plain_flight():
    client = flight.FlightClient(URI)
    token = client.authenticate_basic_token(USER, PASSWORD)
    options = flight.FlightCallOptions(headers=[token])
    descriptor = flight.FlightDescriptor.for_command(statement_command(
        "select id, name from adbc_t order by id"))
    schema = client.get_schema(descriptor, options).schema
    expect(schema.names, ["id", "name"], "GetSchema")
    info = client.get_flight_info(descriptor, options)
    ticket = info.endpoints[0].ticket
    first = client.do_get(ticket, options).read_all()
    second = client.do_get(ticket, options).read_all()
    expect(first.column("id").to_pylist(), [1, 2, 3], "first fetch")
    expect(second.equals(first), True, "a ticket fetched again")
    client.close()


def main():
    try:
        connect(USER, "Wrong-password1").cursor().execute("select 1")
        raise AssertionError("a wrong password logged in")
    except adbc_driver_manager.Error as e:
        if "28P01" not in str(e) and "nauthenticated" not in str(e):
            raise

    conn = connect(USER, PASSWORD)
    cur = conn.cursor()
    cur.execute("drop table if exists adbc_t")
    cur.execute("create table adbc_t (id integer not null, name varchar(20), amount double precision) distkey(id)")
    for row in [(1, "one", 1.5), (2, "two", 2.5), (3, None, None)]:
        cur.execute("insert into adbc_t (id, name, amount) values (?, ?, ?)", parameters=row)

    cur.execute("select id, name, amount from adbc_t order by id")
    table = cur.fetch_arrow_table()
    expect(table.column("id").to_pylist(), [1, 2, 3], "ids")
    expect(table.column("name").to_pylist(), ["one", "two", None], "names")
    expect(table.schema.field("id").type, pa.int32(), "id type")
    expect(table.schema.field("amount").type, pa.float64(), "amount type")

    cur.execute("select name from adbc_t where id = ?", parameters=(2,))
    expect(cur.fetchall(), [("two",)], "parameterized query")

    info = conn.adbc_get_info()
    expect(info["vendor_name"], "Blueshift", "vendor name")

    objects = conn.adbc_get_objects(depth="all", catalog_filter="dev", table_name_filter="adbc_t").read_all().to_pylist()
    tables = [
        (schema["db_schema_name"], t["table_name"], [c["column_name"] for c in t["table_columns"] or []])
        for cat in objects
        for schema in cat["catalog_db_schemas"] or []
        for t in schema["db_schema_tables"] or []
    ]
    expect(tables, [("public", "adbc_t", ["id", "name", "amount"])], "adbc_get_objects")

    schema = conn.adbc_get_table_schema("adbc_t", catalog_filter="dev", db_schema_filter="public")
    expect(schema.names, ["id", "name", "amount"], "adbc_get_table_schema")
    expect(schema.field("name").type, pa.string(), "name type")

    conn.close()
    plain_flight()
    print("ok adbc", flush=True)


if __name__ == "__main__":
    main()
