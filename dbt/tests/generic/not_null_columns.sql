{#- The not-null checks of a model's columns in one scan (one test node per model instead of one per
    column): a row for each column that holds nulls, with how many; the test's failures are the
    null cells. -#}
{% test not_null_columns(model, columns) %}
    {{ config(fail_calc='coalesce(sum(null_rows), 0)') }}
    with counted as (

        select
            {%- for column in columns %}
            count(*) - count({{ column }}) as {{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ model }}

    )
    {% for column in columns -%}
    select '{{ column }}' as column_name, {{ column }} as null_rows from counted where {{ column }} > 0
    {{ 'union all' if not loop.last }}
    {% endfor %}
{% endtest %}
