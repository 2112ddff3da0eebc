{#- The bronze layer. On BigQuery the function and the batch pipelines write real tables, nothing to do.
    On DuckDB bronze is the local landing area: one folder of Parquet files per table, exposed as views
    so that anyone can query bronze.game_events etc. in the warehouse while new files keep landing. -#}
{% macro register_bronze() -%}
    {{ return(adapter.dispatch('register_bronze')()) }}
{%- endmacro %}

{% macro default__register_bronze() -%}
    select 1
{%- endmacro %}

{% macro duckdb__register_bronze() -%}
    {%- set landing = env_var('GA_DATA_DIR', '../data') ~ '/landing' -%}
    create schema if not exists bronze;
    {% for table in var('bronze_tables') -%}
    create or replace view bronze.{{ table }} as
        select * from read_parquet('{{ landing }}/{{ table }}/**/*.parquet', union_by_name = true);
    {% endfor %}
{%- endmacro %}
