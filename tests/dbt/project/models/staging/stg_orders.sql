-- Orders, with the late rows (new orders and status updates) unioned in when var
-- include_late is true; the latest version of each order wins.
with unioned as (
    select order_id, customer_id, order_date, status, amount, discount, note, updated_at
    from {{ ref('orders') }}
    union all
    select order_id, customer_id, order_date, status, amount, discount, note, updated_at
    from {{ ref('orders_late') }}
    where {{ 'true' if var('include_late') else 'false' }}
),

ranked as (
    select
        unioned.*,
        row_number() over (partition by order_id order by updated_at desc) as version_rank
    from unioned
)

select
    order_id,
    customer_id,
    order_date,
    status,
    amount,
    coalesce(discount, 0) as discount,
    amount - coalesce(discount, 0) as net_amount,
    status = 'returned' as is_returned,
    note,
    updated_at
from ranked
where version_rank = 1
