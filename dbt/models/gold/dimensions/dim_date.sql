-- One row per calendar day from var('calendar_start') to var('calendar_end'): the date dimension
-- every fact's date column joins to.
with

days as (

    {{ date_series(var('calendar_start'), var('calendar_end')) }}

),

final as (

    select
        -- ids
        cast(date_day as date) as date_day,

        -- calendar
        cast(extract(year from date_day) as {{ type_integer() }}) as year,
        cast(extract(quarter from date_day) as {{ type_integer() }}) as quarter,
        cast(extract(month from date_day) as {{ type_integer() }}) as month,
        cast(extract(day from date_day) as {{ type_integer() }}) as day_of_month,
        cast({{ iso_day_of_week('cast(date_day as date)') }} as {{ type_integer() }}) as iso_day_of_week,
        {{ iso_day_of_week('cast(date_day as date)') }} >= 6 as is_weekend

    from days

)

select * from final
