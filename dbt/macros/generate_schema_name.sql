{#- Schemas are exactly bronze / silver / gold on DuckDB and <prefix>_bronze / _silver / _gold datasets
    on BigQuery, where the prefix is the target's dataset (GA_BQ_DATASET_PREFIX). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ layer_schema(custom_schema_name or target.schema) }}
{%- endmacro %}

{% macro layer_schema(layer) -%}
    {%- if target.type == 'bigquery' -%}{{ target.schema }}_{{ layer | trim }}{%- else -%}{{ layer | trim }}{%- endif -%}
{%- endmacro %}
