{#- Rows of the model whose composite key (columns) has no row in `to` (to_columns), the
    multi-column twin of dbt's relationships test, e.g. (game_id, player_id) -> dim_player. -#}
{% test relationships_composite(model, columns, to, to_columns) %}
    select {% for column in columns %}child.{{ column }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ model }} as child
    left join {{ to }} as parent
        on {% for column in columns -%}
            child.{{ column }} = parent.{{ to_columns[loop.index0] }}{{ ' and ' if not loop.last }}
        {%- endfor %}
    where parent.{{ to_columns[0] }} is null
        and {% for column in columns %}child.{{ column }} is not null{{ ' and ' if not loop.last }}{% endfor %}
{% endtest %}
