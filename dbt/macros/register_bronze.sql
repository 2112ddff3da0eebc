{#- The bronze layer. On BigQuery the function and the batch pipelines write real tables, nothing to do.
    On DuckDB bronze is the local landing area: one folder of Parquet files per table, exposed as views
    over a snapshot of its files taken at the start of each run (see ingestion/streaming/compaction.py): every
    listed file, less the files a listed compacted file replaces (named by the compaction journals,
    read before and after the listing: a journal is written before its compacted file appears and
    removed after its sources). Compaction keeps each file a snapshot names for a day, so the views
    never meet a missing file and never count a merged row twice. -#}
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
        select * from read_parquet({{ bronze_snapshot(landing, table) }}, union_by_name = true);
    {% endfor %}
{%- endmacro %}

{% macro bronze_snapshot(landing, table) -%}
    {%- set folder = landing ~ '/' ~ table -%}
    {%- if not execute -%}
        {{ return("'" ~ folder ~ "/**/*.parquet'") }}
    {%- endif -%}
    {%- set journal_sql = "select content from read_text('" ~ landing ~ "/_journal/" ~ table ~ "/*.json')" -%}
    {%- set before = run_query(journal_sql).columns[0].values() | list -%}
    {%- set listed = run_query("select file from glob('" ~ folder ~ "/**/*.parquet')").columns[0].values() | list -%}
    {%- set journals = before + (run_query(journal_sql).columns[0].values() | list) -%}
    {%- if not listed -%}
        {{ return("'" ~ folder ~ "/**/*.parquet'") }}
    {%- endif -%}
    {%- set names = {} -%}
    {%- for file in listed -%}{%- do names.update({file[folder | length + 1:]: true}) -%}{%- endfor -%}
    {%- for content in journals -%}
        {%- set entry = fromjson(content) -%}
        {%- if entry['output'] in names -%}
            {%- for source in entry['sources'] -%}{%- do names.pop(source, none) -%}{%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set quoted = [] -%}
    {%- for name in names.keys() | sort -%}{%- do quoted.append("'" ~ folder ~ "/" ~ name ~ "'") -%}{%- endfor -%}
    {{ return("[" ~ quoted | join(", ") ~ "]") }}
{%- endmacro %}
