-- Ephemeral: inlined as a CTE into the models that ref it.
{{ config(materialized='ephemeral') }}

select
    order_id,
    case
        when status in ('placed', 'shipped') then 'open'
        when status = 'completed' then 'closed'
        else 'reversed'
    end as status_group
from {{ ref('stg_orders') }}
