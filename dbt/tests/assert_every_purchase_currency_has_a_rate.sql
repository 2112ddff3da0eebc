{{ config(tags=['quality_gate']) }}
-- Every purchase of a counted transaction could be converted: its currency had an FX rate on or
-- before the purchase date. A purchase without one would be missing from revenue_usd.
select game_id, transaction_id, currency, purchase_date
from {{ ref('fct_purchases') }}
where usd_per_unit is null
