{#- The keys (one column or a combination) that occur more than once in a relation, with their
    row counts: what the `unique` and `unique_combination` tests look for. -#}
{% macro repeated_keys(relation, columns, count_name='n_rows', where='true') -%}
    {{ return(adapter.dispatch('repeated_keys')(relation, columns, count_name, where)) }}
{%- endmacro %}

{% macro default__repeated_keys(relation, columns, count_name, where) -%}
    select {{ columns | join(', ') }}, count(*) as {{ count_name }}
    from {{ relation }}
    where {{ where }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{%- endmacro %}

{#- DuckDB: two passes. First the 64-bit hashes of the keys that repeat (grouping 8-byte hashes is
    far cheaper than grouping millions of text keys), then only the rows with such a hash, grouped
    by the key itself, so a hash collision is never taken for a repeat. -#}
{% macro duckdb__repeated_keys(relation, columns, count_name, where) -%}
    select {{ columns | join(', ') }}, count(*) as {{ count_name }}
    from {{ relation }}
    where {{ where }}
        and hash({{ columns | join(', ') }}) in (
            select hash({{ columns | join(', ') }}) as key_hash
            from {{ relation }}
            where {{ where }}
            group by key_hash
            having count(*) > 1
        )
    group by {{ columns | join(', ') }}
    having count(*) > 1
{%- endmacro %}


{#- dbt's built-in `unique` test on DuckDB (found first through the project's dispatch search order):
    the same result as dbt's (unique_field, n_records), through repeated_keys. -#}
{% macro duckdb__test_unique(model, column_name) -%}
    select {{ column_name }} as unique_field, n_records
    from ({{ repeated_keys(model, [column_name], 'n_records', column_name ~ ' is not null') }}) as repeats
{%- endmacro %}
