{#- Column types, one name per meaning, spelled for the target warehouse. Models cast with these and
    the gold contracts declare the same spelling (see dbt/models/gold/marts/_marts__models.yml), so a contract holds on
    both warehouses. -#}

{#- Money rounded to cents: NUMERIC on BigQuery (38, 9), DECIMAL(18, 2) on DuckDB. -#}
{% macro type_money() -%}
    {{ return(adapter.dispatch('type_money')()) }}
{%- endmacro %}
{% macro default__type_money() %}decimal(18, 2){% endmacro %}
{% macro bigquery__type_money() %}numeric{% endmacro %}

{#- A ratio rounded to 4 (or 2) decimals. -#}
{% macro type_ratio() -%}
    {{ return(adapter.dispatch('type_ratio')()) }}
{%- endmacro %}
{% macro default__type_ratio() %}decimal(18, 4){% endmacro %}
{% macro bigquery__type_ratio() %}numeric{% endmacro %}

{#- A measured decimal as it arrives (prices, durations, ad revenue): 9 decimals, BigQuery NUMERIC. -#}
{% macro type_measure() -%}
    {{ return(adapter.dispatch('type_measure')()) }}
{%- endmacro %}
{% macro default__type_measure() %}decimal(38, 9){% endmacro %}
{% macro bigquery__type_measure() %}numeric{% endmacro %}

{#- An exact product of measures (price x quantity x FX rate) before rounding: 18 decimals. -#}
{% macro type_exact() -%}
    {{ return(adapter.dispatch('type_exact')()) }}
{%- endmacro %}
{% macro default__type_exact() %}decimal(38, 18){% endmacro %}
{% macro bigquery__type_exact() %}bignumeric{% endmacro %}

{#- Whole numbers and text. -#}
{% macro type_integer() -%}
    {{ return(adapter.dispatch('type_integer')()) }}
{%- endmacro %}
{% macro default__type_integer() %}bigint{% endmacro %}
{% macro bigquery__type_integer() %}int64{% endmacro %}

{% macro type_text() -%}
    {{ return(adapter.dispatch('type_text')()) }}
{%- endmacro %}
{% macro default__type_text() %}varchar{% endmacro %}
{% macro bigquery__type_text() %}string{% endmacro %}

{#- A decimal rounded to `scale` places (durations to 2, ratios to 4). -#}
{% macro type_rounded(scale) -%}
    {{ return(adapter.dispatch('type_rounded')(scale)) }}
{%- endmacro %}
{% macro default__type_rounded(scale) %}decimal(18, {{ scale }}){% endmacro %}
{% macro bigquery__type_rounded(scale) %}numeric{% endmacro %}
