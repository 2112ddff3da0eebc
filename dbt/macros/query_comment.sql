{#- The comment on every query dbt sends; with job-label: true dbt-bigquery turns its JSON keys into
    BigQuery job labels, so costs can be split by model, target and invocation, and the jobs of a
    flow run (flow_run, from GA_RUN_ID) can be found and cancelled when the run stops. -#}
{% macro query_comment(node) -%}
    {%- set comment = {
        'app': 'game_analytics_dbt',
        'dbt_version': dbt_version,
        'profile': target.get('profile_name'),
        'target': target.get('target_name'),
        'invocation_id': invocation_id,
    } -%}
    {%- if env_var('GA_RUN_ID', '') -%}
        {%- do comment.update({'flow_run': env_var('GA_RUN_ID')}) -%}
    {%- endif -%}
    {%- if node is not none -%}
        {%- do comment.update({'node_id': node.unique_id, 'resource_type': node.resource_type}) -%}
    {%- endif -%}
    {{ return(tojson(comment)) }}
{%- endmacro %}
