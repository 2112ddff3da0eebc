{#- One row per `partition_by` (a column list as text) of `relation`: the first in `order_by` order.
    (BigQuery wants a WHERE next to QUALIFY.) -#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select *
    from {{ relation }}
    where true
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}
