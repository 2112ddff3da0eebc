{#- Rows where column_name < other (both in the same row), e.g. mau >= dau. -#}
{% test column_at_least(model, column_name, other) %}
    select {{ column_name }}, {{ other }}
    from {{ model }}
    where {{ column_name }} < {{ other }}
{% endtest %}

{#- Rows where column_name > other, e.g. retained_d1 <= cohort_size. -#}
{% test column_at_most(model, column_name, other) %}
    select {{ column_name }}, {{ other }}
    from {{ model }}
    where {{ column_name }} > {{ other }}
{% endtest %}
