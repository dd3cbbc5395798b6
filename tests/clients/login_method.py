"""Logs in with psycopg (libpq 16+), allowing one authentication method only.

usage: login_method.py HOST PORT USER PASSWORD METHOD

METHOD is libpq's `require_auth` (`md5`, `scram-sha-256`, ...): libpq refuses to go on if
the server asks for another one, so the outcome says which method the server chose.
Prints `ok <current_user>` or `refused <message>` on one line.
"""

import sys

import psycopg


def main() -> None:
    host, port, user, password, method = sys.argv[1:6]
    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname="dev",
            sslmode="disable",
            require_auth=method,
            connect_timeout=10,
        ) as conn:
            row = conn.execute("select current_user").fetchone()
            print(f"ok {row[0]}")
    except psycopg.OperationalError as e:
        print("refused " + " ".join(str(e).split()))


if __name__ == "__main__":
    main()
