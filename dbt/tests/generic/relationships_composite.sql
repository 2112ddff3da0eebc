{#- Keys (columns) of the model that have no row in `to` (to_columns), with how many rows carry
    each: the multi-column twin of dbt's relationships test, e.g. (game_id, player_id) ->
    dim_player. The child's keys are grouped before the join, so a 6M-row fact is joined as its
    few distinct keys; the failures count rows, as dbt's relationships test does. -#}
{% test relationships_composite(model, columns, to, to_columns) %}
    {{ config(fail_calc='coalesce(sum(n_rows), 0)') }}
    select {% for column in columns %}child.{{ column }}, {% endfor %}child.n_rows
    from (
        select {{ columns | join(', ') }}, count(*) as n_rows
        from {{ model }}
        where {% for column in columns %}{{ column }} is not null{{ ' and ' if not loop.last }}{% endfor %}
        group by {{ columns | join(', ') }}
    ) as child
    left join {{ to }} as parent
        on {% for column in columns -%}
            child.{{ column }} = parent.{{ to_columns[loop.index0] }}{{ ' and ' if not loop.last }}
        {%- endfor %}
    where parent.{{ to_columns[0] }} is null
{% endtest %}
