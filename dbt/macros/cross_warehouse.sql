{#- The few places where BigQuery and DuckDB speak different SQL. Every model calls these macros,
    so a model reads the same on both warehouses; each macro dispatches on the adapter
    (default__ is the ANSI-ish form, bigquery__ and duckdb__ the exceptions). -#}


{#- Text of a scalar at a top-level key of a JSON text column, unquoted.
    BigQuery JSON_VALUE already unquotes; DuckDB json_value keeps the quotes, ->> does not.
    DuckDB reads JSON numbers as doubles and writes them back in shortest form: exact for the
    at most 15 significant digits money and durations carry here. -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    json_value({{ column }}, '$.{{ key }}')
{%- endmacro %}

{% macro bigquery__json_text(column, key) -%}
    json_value({{ column }}, '$.{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}


{#- dbt.safe_cast is a plain cast on DuckDB (an error on bad input); try_cast gives null instead,
    as BigQuery's SAFE_CAST does. Found first through the project's dispatch search order. -#}
{% macro duckdb__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}


{#- A date plus a whole number of days (the number may be a column), still a DATE. -#}
{% macro add_days(date_expr, days) -%}
    {{ return(adapter.dispatch('add_days')(date_expr, days)) }}
{%- endmacro %}

{% macro default__add_days(date_expr, days) -%}
    cast({{ date_expr }} + ({{ days }}) * interval '1 day' as date)
{%- endmacro %}

{% macro bigquery__add_days(date_expr, days) -%}
    date_add({{ date_expr }}, interval {{ days }} day)
{%- endmacro %}

{% macro duckdb__add_days(date_expr, days) -%}
    cast({{ date_expr }} + cast({{ days }} as integer) as date)
{%- endmacro %}


{#- Whole days from one date to another. -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_between(start_date, end_date) -%}
    ({{ end_date }} - {{ start_date }})
{%- endmacro %}

{% macro bigquery__days_between(start_date, end_date) -%}
    date_diff({{ end_date }}, {{ start_date }}, day)
{%- endmacro %}

{% macro duckdb__days_between(start_date, end_date) -%}
    date_diff('day', {{ start_date }}, {{ end_date }})
{%- endmacro %}


{#- A timestamp minus a whole number of hours (checked: the number becomes a literal). -#}
{% macro hours_before(timestamp_expr, hours) -%}
    {{ return(adapter.dispatch('hours_before')(timestamp_expr, whole_number(hours, 'hours_before(): hours'))) }}
{%- endmacro %}

{% macro default__hours_before(timestamp_expr, hours) -%}
    ({{ timestamp_expr }} - interval '{{ hours }} hours')
{%- endmacro %}

{% macro bigquery__hours_before(timestamp_expr, hours) -%}
    timestamp_sub({{ timestamp_expr }}, interval {{ hours }} hour)
{%- endmacro %}

{% macro duckdb__hours_before(timestamp_expr, hours) -%}
    ({{ timestamp_expr }} - to_hours(cast({{ hours }} as bigint)))
{%- endmacro %}


{#- ISO day of the week, Monday = 1 .. Sunday = 7. -#}
{% macro iso_day_of_week(date_expr) -%}
    {{ return(adapter.dispatch('iso_day_of_week')(date_expr)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(date_expr) -%}
    extract(isodow from {{ date_expr }})
{%- endmacro %}

{% macro bigquery__iso_day_of_week(date_expr) -%}
    mod(extract(dayofweek from {{ date_expr }}) + 5, 7) + 1
{%- endmacro %}


{#- round(numerator / denominator, places), exactly, halves away from zero, for a non-negative
    numerator (an integer or a decimal with at most numerator_scale decimals) and a positive
    integer denominator; null when the denominator is 0.
    BigQuery divides BIGNUMERIC (38 decimals, far below any half-way ambiguity for these
    denominators) and ROUND rounds halves away from zero. DuckDB turns a DECIMAL division into
    a DOUBLE, so there the quotient is computed on integers: units = (2N + D) div (2D). -#}
{% macro round_ratio(numerator, denominator, numerator_scale=0, places=4) -%}
    {{ return(adapter.dispatch('round_ratio')(numerator, denominator, numerator_scale, places)) }}
{%- endmacro %}

{% macro default__round_ratio(numerator, denominator, numerator_scale, places) -%}
    case when {{ denominator }} = 0 then null
         else round(cast({{ numerator }} as decimal(38, 18)) / {{ denominator }}, {{ places }}) end
{%- endmacro %}

{% macro bigquery__round_ratio(numerator, denominator, numerator_scale, places) -%}
    case when {{ denominator }} = 0 then null
         else round(cast({{ numerator }} as bignumeric) / {{ denominator }}, {{ places }}) end
{%- endmacro %}

{% macro duckdb__round_ratio(numerator, denominator, numerator_scale, places) -%}
    {%- set num_units = 'cast((' ~ numerator ~ ') * ' ~ (10 ** numerator_scale) ~ ' as hugeint)' -%}
    {%- set den_units = 'cast(' ~ denominator ~ ' as hugeint) * ' ~ (10 ** numerator_scale) -%}
    case when {{ denominator }} = 0 then null
         else cast(
             (2 * {{ num_units }} * {{ 10 ** places }} + {{ den_units }}) // (2 * {{ den_units }})
             as decimal(38, 0)) * {{ decimal_unit(places) }} end
{%- endmacro %}

{#- 10^-places as an exact decimal literal, e.g. 0.0001 -#}
{% macro decimal_unit(places) -%}
    {%- if places == 0 -%}1{%- else -%}0.{{ '0' * (places - 1) }}1{%- endif -%}
{%- endmacro %}


{#- round(x, places) of a DECIMAL, halves away from zero: ROUND does this on both warehouses for
    exact numerics. Named so that the rounding rule is written down once. -#}
{% macro round_half_up(expr, places) -%}
    round({{ expr }}, {{ places }})
{%- endmacro %}


{#- The exact product of decimals with at most 9 decimals each (prices, quantities, FX rates).
    BigQuery NUMERIC x NUMERIC rounds to 9 decimals, so the factors go to BIGNUMERIC first. DuckDB
    adds the scales (9 + 9 = 18 of DECIMAL(38, 18)); widening the factors first would leave no room
    for the integer digits. -#}
{% macro exact_product(factors) -%}
    {{ return(adapter.dispatch('exact_product')(factors)) }}
{%- endmacro %}

{% macro default__exact_product(factors) -%}
    cast({{ factors | join(' * ') }} as {{ type_exact() }})
{%- endmacro %}

{% macro bigquery__exact_product(factors) -%}
    {%- set widened = [] -%}
    {%- for factor in factors -%}{%- do widened.append('cast(' ~ factor ~ ' as bignumeric)') -%}{%- endfor -%}
    ({{ widened | join(' * ') }})
{%- endmacro %}


{#- One row per day from start_date to end_date (inclusive, dates checked by iso_date), column
    date_day. dbt.date_spine asks the warehouse for the number of days first, which a compile
    without a connection cannot do; both warehouses have a series function. -#}
{% macro date_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_series')(iso_date(start_date, 'date_series(): start_date'), iso_date(end_date, 'date_series(): end_date'))) }}
{%- endmacro %}

{% macro default__date_series(start_date, end_date) -%}
    select cast(generate_series as date) as date_day
    from generate_series(cast('{{ start_date }}' as date), cast('{{ end_date }}' as date), interval '1 day')
{%- endmacro %}

{% macro bigquery__date_series(start_date, end_date) -%}
    select date_day
    from unnest(generate_date_array(date '{{ start_date }}', date '{{ end_date }}', interval 1 day)) as date_day
{%- endmacro %}


{#- A parameter of the event's params JSON, typed (text when no type is given), read only where
    `condition` holds (the event kinds that carry it): null elsewhere, and no JSON parsing spent on
    the rows that cannot have it. -#}
{% macro event_param(condition, key, type=none) -%}
    {%- set value = json_text('params', key) -%}
    case when {{ condition }} then {{ dbt.safe_cast(value, type) if type else value }} end
{%- endmacro %}
