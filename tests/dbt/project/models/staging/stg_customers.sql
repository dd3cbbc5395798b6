-- Customers, with the late updates/new customers unioned in when var include_late is true;
-- the latest version of each customer wins.
with unioned as (
    select customer_id, first_name, last_name, email, signup_date, segment, credit_limit, updated_at
    from {{ ref('customers') }}
    union all
    select customer_id, first_name, last_name, email, signup_date, segment, credit_limit, updated_at
    from {{ ref('customers_late') }}
    where {{ 'true' if var('include_late') else 'false' }}
),

ranked as (
    select
        unioned.*,
        row_number() over (partition by customer_id order by updated_at desc) as version_rank
    from unioned
)

select
    customer_id,
    first_name,
    last_name,
    first_name || ' ' || last_name as full_name,
    email,
    email is not null as has_email,
    signup_date,
    segment,
    credit_limit,
    updated_at
from ranked
where version_rank = 1
