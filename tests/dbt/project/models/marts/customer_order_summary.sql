-- Incremental, merge: on an incremental run only customers with orders updated since the last
-- run are recomputed (over all their orders) and merged in by customer_id.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='customer_id',
        dist='customer_id'
    )
}}

with changed_customers as (
    select distinct customer_id
    from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where updated_at > (select max(last_updated_at) from {{ this }})
    {% endif %}
)

select
    o.customer_id,
    count(*) as order_count,
    sum(o.amount) as gross_amount,
    sum(o.net_amount) as net_amount,
    sum(case when o.is_returned then 1 else 0 end) as returned_count,
    max(o.order_date) as last_order_date,
    max(o.updated_at) as last_updated_at
from {{ ref('stg_orders') }} as o
where o.customer_id in (select customer_id from changed_customers)
group by o.customer_id
