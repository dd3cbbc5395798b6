{{ config(materialized='table', dist='all', sort=['customer_id']) }}

with order_stats as (
    select
        customer_id,
        count(*) as order_count,
        sum(case when is_returned then 0 else 1 end) as kept_order_count,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        sum(net_amount) as lifetime_value
    from {{ ref('stg_orders') }}
    group by customer_id
)

select
    c.customer_id,
    c.full_name,
    c.email,
    c.segment,
    c.signup_date,
    c.credit_limit,
    coalesce(s.order_count, 0) as order_count,
    coalesce(s.kept_order_count, 0) as kept_order_count,
    s.first_order_date,
    s.last_order_date,
    coalesce(s.lifetime_value, 0) as lifetime_value,
    case
        when coalesce(s.lifetime_value, 0) >= 1000 then 'gold'
        when coalesce(s.lifetime_value, 0) >= 300 then 'silver'
        else 'bronze'
    end as tier
from {{ ref('stg_customers') }} as c
left join order_stats as s on s.customer_id = c.customer_id
