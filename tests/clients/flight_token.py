"""A Flight SQL session driven line by line, with pyarrow's Flight client: it logs in once
(Handshake with Basic credentials) and keeps using the bearer token it got.

usage: flight_token.py HOST PORT, then commands on stdin, one per line:
  login USER PASSWORD   Handshake; prints `ok` or `refused <message>`
  query SQL             GetFlightInfo + DoGet with the token; prints `ok <first value>`,
                        `unauthenticated <message>` or `error <message>`
Each answer is one line on stdout.
"""

import sys

import pyarrow.flight as flight

STATEMENT = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    out = bytearray([number << 3 | 2])
    n = len(data)
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + data


def command(sql: str) -> bytes:
    statement = field(1, sql.encode())
    return field(1, STATEMENT.encode()) + field(2, statement)


def main() -> None:
    host, port = sys.argv[1:3]
    client = flight.FlightClient(f"grpc://{host}:{port}")
    headers = []
    for line in sys.stdin:
        verb, _, rest = line.strip().partition(" ")
        try:
            if verb == "login":
                user, password = rest.split(" ", 1)
                headers = [client.authenticate_basic_token(user, password)]
                answer = "ok"
            elif verb == "query":
                options = flight.FlightCallOptions(headers=headers, timeout=30)
                descriptor = flight.FlightDescriptor.for_command(command(rest))
                info = client.get_flight_info(descriptor, options)
                table = client.do_get(info.endpoints[0].ticket, options).read_all()
                answer = f"ok {table.column(0)[0].as_py()}"
            else:
                answer = f"error unknown command {verb}"
        except flight.FlightUnauthenticatedError as e:
            prefix = "refused" if verb == "login" else "unauthenticated"
            answer = f"{prefix} " + " ".join(str(e).split())
        except Exception as e:  # noqa: BLE001 - the answer says what happened
            prefix = "refused" if verb == "login" else "error"
            answer = f"{prefix} {type(e).__name__}: " + " ".join(str(e).split())
        print(answer, flush=True)


if __name__ == "__main__":
    main()
