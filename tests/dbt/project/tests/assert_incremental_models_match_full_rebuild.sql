-- The incremental models must hold what a full rebuild would: fct_orders_di the same rows as
-- the order columns of fct_orders, customer_order_summary the same totals as dim_customers.
-- Returns the differing rows (none when the test passes).
with di as (
    select order_id, customer_id, order_date, status, amount, net_amount, updated_at
    from {{ ref('fct_orders_di') }}
),

full_orders as (
    select order_id, customer_id, order_date, status, amount, net_amount, updated_at
    from {{ ref('fct_orders') }}
),

summary as (
    select customer_id, order_count, net_amount, last_order_date
    from {{ ref('customer_order_summary') }}
),

full_summary as (
    select customer_id, order_count, lifetime_value as net_amount, last_order_date
    from {{ ref('dim_customers') }}
    where order_count > 0
)

select 'fct_orders_di only' as side, order_id as id from (select * from di except select * from full_orders) a
union all
select 'fct_orders only' as side, order_id as id from (select * from full_orders except select * from di) b
union all
select 'customer_order_summary only' as side, customer_id as id from (select * from summary except select * from full_summary) c
union all
select 'dim_customers only' as side, customer_id as id from (select * from full_summary except select * from summary) d
