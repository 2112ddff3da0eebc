{#- The comment on every query dbt sends; with job-label: true dbt-bigquery turns its JSON keys into
    BigQuery job labels, so costs can be split by model, target and invocation. -#}
{% macro query_comment(node) -%}
    {%- set comment = {
        'app': 'game_analytics_dbt',
        'dbt_version': dbt_version,
        'profile': target.get('profile_name'),
        'target': target.get('target_name'),
        'invocation_id': invocation_id,
    } -%}
    {%- if node is not none -%}
        {%- do comment.update({'node_id': node.unique_id, 'resource_type': node.resource_type}) -%}
    {%- endif -%}
    {{ return(tojson(comment)) }}
{%- endmacro %}
