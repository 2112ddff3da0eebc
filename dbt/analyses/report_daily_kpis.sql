-- Every row of gold.mart_daily_kpis, for the run's KPI report (read by flows/publish.py).
select * from {{ ref('mart_daily_kpis') }}
order by activity_date, game_id
