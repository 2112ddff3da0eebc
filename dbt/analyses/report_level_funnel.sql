-- Every row of gold.mart_level_funnel, for the run's KPI report (read by flows/publish.py).
select * from {{ ref('mart_level_funnel') }}
order by game_id, level
