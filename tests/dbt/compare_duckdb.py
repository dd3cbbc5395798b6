"""Checks the dbt models the server built against DuckDB running the same SQL on the same seeds.

    python compare_duckdb.py TARGET_DIR SEEDS_DIR

TARGET_DIR is the target path of a `dbt compile --full-refresh --vars '{include_late: true}'`
(its manifest.json has every model's compiled SQL and the seeds' column_types), SEEDS_DIR the
project's seeds/. The server is reached with DBT_HOST DBT_PORT DBT_USER DBT_PASSWORD DBT_DBNAME
and DBT_SCHEMA (psycopg). DuckDB loads the seeds into catalog DBT_DBNAME, schema DBT_SCHEMA, so
the compiled three-part names resolve unchanged, builds every non-ephemeral model from its
full-refresh SQL, and each model's rows are compared with the server's, as multisets, numbers
rounded to 6 places. The incremental models on the server went through an incremental run, so a
match also checks delete+insert and merge. Exits 1 on any difference. Needs duckdb and psycopg
(tests/requirements.txt has both).
"""
import decimal
import json
import os
import sys

import duckdb
import psycopg


def norm(value):
    if isinstance(value, (float, decimal.Decimal)):
        return round(decimal.Decimal(value), 6)
    return value


def sort_key(row):
    return tuple((v is None, str(v)) for v in row)


def main():
    target_dir, seeds_dir = sys.argv[1], sys.argv[2]
    database, schema = os.environ["DBT_DBNAME"], os.environ["DBT_SCHEMA"]
    manifest = json.load(open(os.path.join(target_dir, "manifest.json")))
    nodes = manifest["nodes"]

    # The file's name is the catalog's: DBT_DBNAME, so that "db"."schema"."name" resolves.
    path = os.path.join(target_dir, "duckdb", f"{database}.duckdb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    con = duckdb.connect(path)
    con.execute(f'create schema "{schema}"')

    for node in nodes.values():
        if node["resource_type"] != "seed":
            continue
        types = node["config"].get("column_types") or {}
        path = os.path.join(seeds_dir, node["name"] + ".csv")
        con.execute(
            f'create table "{schema}"."{node["name"]}" as '
            f"select * from read_csv(?, header = true, types = {types!r})",
            [path],
        )

    # Models in dependency order.
    models = {uid: n for uid, n in nodes.items()
              if n["resource_type"] == "model" and n["config"]["materialized"] != "ephemeral"}
    done, order = set(), []

    def visit(uid):
        if uid in done or uid not in models:
            return
        for dep in models[uid]["depends_on"]["nodes"]:
            visit(dep)
        done.add(uid)
        order.append(uid)

    for uid in sorted(models):
        visit(uid)

    for uid in order:
        node = models[uid]
        kind = "view" if node["config"]["materialized"] == "view" else "table"
        con.execute(f'create {kind} "{database}"."{schema}"."{node["name"]}" as {node["compiled_code"]}')

    server = psycopg.connect(
        host=os.environ["DBT_HOST"], port=os.environ["DBT_PORT"], user=os.environ["DBT_USER"],
        password=os.environ["DBT_PASSWORD"], dbname=database)
    failures = 0
    for uid in order:
        name = models[uid]["name"]
        cols = [r[0] for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position", [schema, name]).fetchall()]
        select = f'select {", ".join(cols)} from "{schema}"."{name}"'
        expected = sorted((tuple(map(norm, r)) for r in con.execute(select).fetchall()), key=sort_key)
        actual = sorted((tuple(map(norm, r)) for r in server.execute(select).fetchall()), key=sort_key)
        if expected == actual:
            print(f"compare: {name}: {len(actual)} rows match DuckDB")
            continue
        failures += 1
        print(f"compare: {name}: MISMATCH (server {len(actual)} rows, DuckDB {len(expected)} rows)")
        missing = [r for r in expected if r not in actual][:5]
        extra = [r for r in actual if r not in expected][:5]
        for r in missing:
            print(f"   only in DuckDB: {r}")
        for r in extra:
            print(f"   only on server: {r}")
    print(f"compare: {len(order) - failures} models match, {failures} differ")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
