{% snapshot customers_snapshot %}
{{
    config(
        target_schema=target.schema,
        unique_key='customer_id',
        strategy='timestamp',
        updated_at='updated_at'
    )
}}

select customer_id, full_name, email, segment, credit_limit, updated_at
from {{ ref('stg_customers') }}

{% endsnapshot %}
