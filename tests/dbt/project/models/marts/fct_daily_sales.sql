{{ config(materialized='table', dist='even') }}

select
    order_date,
    count(*) as order_count,
    count(distinct customer_id) as customer_count,
    sum(amount) as gross_amount,
    sum(net_amount) as net_amount,
    round(avg(amount), 2) as avg_amount,
    max(amount) as max_amount
from {{ ref('stg_orders') }}
where not is_returned
group by order_date
