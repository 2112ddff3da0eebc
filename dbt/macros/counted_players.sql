{#- The counted-player rule (README, KPI definitions): a row counts unless its player is a test
    account of its game: is_test_account in dim_player, matched on game_id and player_id (a player
    missing from the players export is in dim_player as no test account, so it counts).
    The rows of `relation` (any relation with game_id and player_id) whose player counts, through
    an anti-join with the few test accounts: cheaper than joining every row to every player.
    Every mart and the gate's revenue reconciliation read their rows through this one macro. -#}
{% macro counted_players_only(relation) -%}
    select counted.*
    from {{ relation }} as counted
    left join (
        select game_id, player_id from {{ ref('dim_player') }} where is_test_account
    ) as test_accounts
        on counted.game_id = test_accounts.game_id
        and counted.player_id = test_accounts.player_id
    where test_accounts.player_id is null
{%- endmacro %}
