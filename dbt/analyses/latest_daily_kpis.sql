-- The last seven days of daily KPIs per game, newest first: the headline of a pipeline run.
with

kpis as (

    select * from {{ ref('mart_daily_kpis') }}

),

last_day as (

    select max(activity_date) as activity_date from kpis

)

select kpis.*
from kpis
cross join last_day
where kpis.activity_date > {{ dbt.dateadd('day', -7, 'last_day.activity_date') }}
order by kpis.activity_date desc, kpis.game_id
