{% snapshot orders_status_snapshot %}
{{
    config(
        target_schema=target.schema,
        unique_key='order_id',
        strategy='check',
        check_cols=['status', 'amount']
    )
}}

select order_id, customer_id, status, amount
from {{ ref('stg_orders') }}

{% endsnapshot %}
