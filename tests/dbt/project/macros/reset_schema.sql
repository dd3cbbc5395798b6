{#- `dbt run-operation reset_schema`: drops the target schema (cascade) so that a suite run
    starts from nothing. Sends `drop schema if exists "<schema>" cascade`. -#}
{% macro reset_schema() %}
    {% set relation = api.Relation.create(database=target.database, schema=target.schema) %}
    {% do adapter.drop_schema(relation) %}
    {% do log("dropped schema " ~ target.schema, info=True) %}
{% endmacro %}
