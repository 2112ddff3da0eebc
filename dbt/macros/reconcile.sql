{#- The quality gate reconciles the whole history. With var('reconcile_hours') set (the hourly
    deployments), its costly reconciliations cover what reached bronze in the last N hours before the
    newest arrival, and the event dates those arrivals carry: what the runs of those hours can have
    added or missed. The daily run, without the var, reconciles everything.
    A gate test starts its WITH with reconcile_window() (the window, computed once), then filters with
    reconciled(column, 'arrival') (column, an ingested_at, is in those hours) or reconciled(column,
    'date') (column, an event date, is on or after the earliest date arrived in them). Without the
    var, the window is absent and every filter is `true`. -#}
{% macro reconcile_hours() -%}
    {%- set hours = var('reconcile_hours', none) -%}
    {%- if hours is not none and (hours is not integer or hours <= 0) -%}
        {{ exceptions.raise_compiler_error("var reconcile_hours: a whole number of hours above 0, not '" ~ hours ~ "'") }}
    {%- endif -%}
    {{ return(hours) }}
{%- endmacro %}

{% macro reconcile_window() -%}
    {#- bronze is rendered whether or not the var is set, so that dbt records it as a dependency -#}
    {%- set bronze = source('telemetry', 'game_events') -%}
    {%- if reconcile_hours() is not none %}
reconcile_window as (

    select min(newest.since) as since, min({{ utc_date('arrived.event_timestamp') }}) as from_date
    from {{ bronze }} as arrived
    cross join (select {{ hours_before('max(ingested_at)', reconcile_hours()) }} as since from {{ bronze }}) as newest
    where arrived.ingested_at >= newest.since

),
    {%- endif -%}
{%- endmacro %}

{% macro reconciled(column, by) -%}
    {%- if by not in ('arrival', 'date') -%}
        {{ exceptions.raise_compiler_error("reconciled(): by is 'arrival' or 'date', not '" ~ by ~ "'") }}
    {%- endif -%}
    {%- if reconcile_hours() is none -%}
        true
    {%- else -%}
        {{ column }} >= (select {{ 'since' if by == 'arrival' else 'from_date' }} from reconcile_window)
    {%- endif -%}
{%- endmacro %}
