-- Incremental, delete+insert: on an incremental run only orders updated since the last run
-- are selected; their old rows are deleted by order_id and the new versions inserted.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        dist='customer_id',
        sort='order_date'
    )
}}

select
    order_id,
    customer_id,
    order_date,
    status,
    amount,
    discount,
    net_amount,
    is_returned,
    updated_at
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
