-- A late-binding view on Redshift (`with no schema binding`); dbt-postgres ignores `bind`.
{{ config(materialized='view', bind=False) }}

select order_id, customer_id, note
from {{ ref('orders') }}
where note is not null
