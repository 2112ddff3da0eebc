-- Every row of gold.mart_retention, for the run's KPI report (read by flows/publish.py).
select * from {{ ref('mart_retention') }}
order by cohort_date, game_id
