{#- Incremental models are driven by arrival, not by event time: each run takes the rows that
    reached bronze (ingested_at) since the newest row the model already holds, minus an overlap of
    var('arrival_lookback_hours') for rows that became visible late (a landing file renamed into
    place after a newer one, BigQuery's streaming buffer). Whatever their event date, late events
    are merged by key, so an incremental run equals a full refresh however late an event is.
    event_date_column names the row's event date, for a backfill window (backfill_window). -#}
{% macro arrival_window(column='ingested_at', watermark_column=none, event_date_column='event_date') -%}
    {%- set watermark = watermark_column or column -%}
    ({{ column }} >= (
        select {{ hours_before('coalesce(max(' ~ watermark ~ "), cast('1970-01-01 00:00:00+00' as timestamp))", int_var('arrival_lookback_hours')) }}
        from {{ this }}
    ){{ backfill_window(event_date_column) }})
{%- endmacro %}


{#- A backfill (the flow's start/end, passed as vars start_date and end_date) also rebuilds every
    row whose event date falls in [start_date, end_date], whenever it arrived. -#}
{% macro backfill_window(event_date_column) -%}
    {%- if var('start_date', none) is not none and var('end_date', none) is not none %}
        or {{ event_date_column }} between cast('{{ iso_date(var("start_date"), "var start_date") }}' as date)
            and cast('{{ iso_date(var("end_date"), "var end_date") }}' as date)
    {%- endif -%}
{%- endmacro %}


{#- Table settings of an event-date partitioned table. BigQuery: partitioned by day and clustered;
    DuckDB has neither, and dbt-duckdb would read a partition_by dict as its own (file) option, so
    nothing is set there. -#}
{% macro date_partition(field) -%}
    {%- if target.type == 'bigquery' -%}
        {{ return({'field': field, 'data_type': 'date', 'granularity': 'day'}) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}

{% macro clustering(columns) -%}
    {{ return(columns if target.type == 'bigquery' else none) }}
{%- endmacro %}

{#- merge on BigQuery; delete+insert on DuckDB (same result for a batch keyed by unique_key). -#}
{% macro keyed_strategy() -%}
    {{ return('merge' if target.type == 'bigquery' else 'delete+insert') }}
{%- endmacro %}

{#- For the models whose runs add only keys the table does not hold yet (their batch goes through
    new_keys_only): merge on BigQuery still, a plain append on DuckDB, which spares a delete pass
    over every key of the table that could not match anything. -#}
{% macro new_keys_strategy() -%}
    {{ return('merge' if target.type == 'bigquery' else 'append') }}
{%- endmacro %}


{#- The config of an incremental table partitioned by an event date (date_column) on BigQuery, for
    `{{ config(**date_partitioned_incremental(...)) }}`: merged by unique_key (appended on DuckDB
    when adds_new_keys_only), its MERGE pruned to the partitions of merge_dates (merge_pruning),
    clustered by cluster_by; a change of its columns stops the run rather than drifting. -#}
{% macro date_partitioned_incremental(unique_key, date_column, cluster_by, adds_new_keys_only=false, merge_dates='touched') -%}
    {{ return({
        'materialized': 'incremental',
        'unique_key': unique_key,
        'incremental_strategy': new_keys_strategy() if adds_new_keys_only else keyed_strategy(),
        'on_schema_change': 'fail',
        'partition_by': date_partition(date_column),
        'incremental_predicates': merge_pruning(date_column, merge_dates),
        'cluster_by': clustering(cluster_by),
    }) }}
{%- endmacro %}


{#- The rows of `batch` (a CTE of arrived rows) whose key (`keys`, one column or several) this table
    does not hold yet; every row of it when the table is built in full. A key's rows never move to an earlier date (an event keeps its date), so the
    table is looked up only from the batch's earliest date on: date_column in the table, batch_date
    (default: the same column) in the batch. With a single key column only the batch's own keys are
    read from the table, so the anti-join builds on the few arrived keys, not on every key of the
    days they span. -#}
{% macro new_keys_only(batch, keys, date_column, batch_date=none) -%}
    {%- set keys = [keys] if keys is string else keys -%}
    {%- if not is_incremental() -%}
    select * from {{ batch }}
    {%- else -%}
    select {{ batch }}.*
    from {{ batch }}
    left join (
        select {{ keys | join(', ') }}
        from {{ this }}
        where {{ date_column }} >= (select min({{ batch_date or date_column }}) from {{ batch }})
        {%- if keys | length == 1 %}
            and {{ keys[0] }} in (select {{ keys[0] }} from {{ batch }})
        {%- endif %}
    ) as existing
        on {% for key in keys %}{{ batch }}.{{ key }} = existing.{{ key }}{{ '\n        and ' if not loop.last }}{% endfor %}
    where existing.{{ keys[0] }} is null
    {%- endif -%}
{%- endmacro %}


{#- Development builds: with var('dev_days') set on a non-production target, event models keep only
    the last N days of event time, so a local build over a big landing area stays fast. -#}
{% macro dev_date_limit(date_column) -%}
    {%- if var('dev_days', none) is not none and target.name != 'bigquery' -%}
        and {{ date_column }} >= {{ add_days('current_date', -1 * int_var('dev_days', min=1)) }}
    {%- endif -%}
{%- endmacro %}


{#- When this dbt run started, as a timestamp: a fact's loaded_at, so that a model built on the fact
    can take exactly the rows added since its own last run (a watermark no late row can slip past,
    since a run's rows all carry that run's start and runs never overlap). -#}
{% macro run_started_timestamp() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}


{#- Partition pruning of an incremental MERGE on BigQuery (incremental_predicates), so that an
    hourly run reads only the target partitions its batch touches, not every partition's keys:
    'touched' filters the target on the batch's own dates (for keys that fix the date: an event_id,
    whose event keeps its date, or a key that holds the date); 'from_earliest' on the batch's
    earliest date onwards (a key whose date can only move earlier as events arrive: a purchase's
    date is its first event's). The dates are computed once into script variables before the MERGE
    (bigquery__get_merge_sql), which BigQuery prunes on as on constants. Nothing on DuckDB, where
    delete+insert would apply the predicates to its delete. -#}
{% macro merge_pruning(column, dates='touched') -%}
    {%- if target.type != 'bigquery' -%}
        {{ return(none) }}
    {%- elif dates == 'touched' -%}
        {{ return(['DBT_INTERNAL_DEST.' ~ column ~ ' in unnest(dbt_merge_dates)']) }}
    {%- elif dates == 'from_earliest' -%}
        {{ return(['DBT_INTERNAL_DEST.' ~ column ~ ' >= dbt_merge_from_date']) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("merge_pruning(): dates is 'touched' or 'from_earliest', not '" ~ dates ~ "'") }}
    {%- endif -%}
{%- endmacro %}

{#- dbt's MERGE, preceded by the script variables merge_pruning's predicates use: the batch's
    distinct dates, or its earliest date, in the model's partition column. -#}
{% macro bigquery__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
    {%- set predicates = (incremental_predicates or []) | join(' ') -%}
    {%- set partition = config.get('partition_by') or {} -%}
    {%- if 'dbt_merge_dates' in predicates %}
    declare dbt_merge_dates array<date> default (
        select array_agg(distinct {{ partition.field }}) from {{ source }} as batch
    );
    {%- endif -%}
    {%- if 'dbt_merge_from_date' in predicates %}
    declare dbt_merge_from_date date default (
        select min({{ partition.field }}) from {{ source }} as batch
    );
    {%- endif %}
    {{ default__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) }}
{%- endmacro %}
