{{ config(materialized='table', dist='customer_id', sort='order_date') }}

select
    o.order_id,
    o.customer_id,
    c.segment,
    o.order_date,
    o.status,
    s.status_group,
    o.amount,
    o.discount,
    o.net_amount,
    o.is_returned,
    o.updated_at
from {{ ref('stg_orders') }} as o
join {{ ref('stg_customers') }} as c on c.customer_id = o.customer_id
join {{ ref('int_order_status') }} as s on s.order_id = o.order_id
