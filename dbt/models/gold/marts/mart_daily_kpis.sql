-- Daily KPIs per game: one row per (activity_date, game_id) with any counted activity.
-- Rebuilt from the facts on every run: a late event can change a past day's dau, new_players and
-- the next 30 days' mau, and the facts it reads are small (one row per player-day, session,
-- purchase), so a full rebuild is both the simplest correct answer and cheap.
with

-- the rows of test accounts are left out (macro counted_players_only)
players as (

    {{ counted_players_only(ref('dim_player')) }}

),

player_days as (

    {{ counted_players_only(ref('fct_player_activity_daily')) }}

),

sessions as (

    {{ counted_players_only(ref('fct_sessions')) }}

),

purchases as (

    {{ counted_players_only(ref('fct_purchases')) }}

),

ad_impressions as (

    {{ counted_players_only(ref('fct_ad_impressions')) }}

),

daily_players as (

    select activity_date, game_id, count(*) as dau
    from player_days
    group by activity_date, game_id

),

daily_new_players as (

    select first_seen_date as activity_date, game_id, count(*) as new_players
    from players
    where first_seen_date is not null
    group by first_seen_date, game_id

),

-- MAU without a 30-fold join and without a window: a player's active day keeps the player in MAU
-- for that day and the 29 after it. Of that span, the days not already covered by the player's
-- previous active day start at the later of the day itself and 30 days after the previous one:
-- +1 there, -1 thirty days after the active day, and the running sum on a day is the number of
-- players active in the 30 days ending that day.
window_steps as (

    select
        game_id,
        case
            when previous_activity_date is not null
                and {{ add_days('previous_activity_date', 30) }} > activity_date then {{ add_days('previous_activity_date', 30) }}
            else activity_date
        end as step_date,
        1 as step
    from player_days
    union all
    select game_id, {{ add_days('activity_date', 30) }} as step_date, -1 as step
    from player_days
    union all
    -- every active day gets its running sum, also a day with no step of its own
    select game_id, activity_date as step_date, 0 as step
    from daily_players

),

daily_steps as (

    select game_id, step_date, sum(step) as step
    from window_steps
    group by game_id, step_date

),

daily_mau as (

    select
        game_id,
        step_date as activity_date,
        sum(step) over (partition by game_id order by step_date rows between unbounded preceding and current row) as mau
    from daily_steps

),

daily_sessions as (

    -- one row per session and day: counting rows counts distinct sessions
    select activity_date, game_id, count(*) as sessions
    from sessions
    where session_start_events > 0
    group by activity_date, game_id

),

daily_session_lengths as (

    select activity_date, game_id, sum(total_duration_s) as total_duration_s, sum(session_end_events) as ended_sessions
    from sessions
    where session_end_events > 0
    group by activity_date, game_id

),

daily_revenue as (

    select
        purchase_date as activity_date,
        game_id,
        sum(amount_usd) as revenue_usd,
        count(distinct player_id) as payers
    from purchases
    group by purchase_date, game_id

),

daily_ad_revenue as (

    select impression_date as activity_date, game_id, sum(revenue_usd) as ad_revenue_usd
    from ad_impressions
    group by impression_date, game_id

),

joined as (

    select
        daily_players.activity_date,
        daily_players.game_id,
        daily_players.dau,
        coalesce(daily_new_players.new_players, 0) as new_players,
        daily_mau.mau,
        coalesce(daily_sessions.sessions, 0) as sessions,
        daily_session_lengths.total_duration_s,
        coalesce(daily_session_lengths.ended_sessions, 0) as ended_sessions,
        cast({{ round_half_up('coalesce(daily_revenue.revenue_usd, 0)', 2) }} as {{ type_money() }}) as revenue_usd,
        coalesce(daily_revenue.payers, 0) as payers,
        cast({{ round_half_up('coalesce(daily_ad_revenue.ad_revenue_usd, 0)', 2) }} as {{ type_money() }}) as ad_revenue_usd
    from daily_players
    left join daily_new_players
        on daily_players.activity_date = daily_new_players.activity_date
        and daily_players.game_id = daily_new_players.game_id
    left join daily_mau
        on daily_players.activity_date = daily_mau.activity_date
        and daily_players.game_id = daily_mau.game_id
    left join daily_sessions
        on daily_players.activity_date = daily_sessions.activity_date
        and daily_players.game_id = daily_sessions.game_id
    left join daily_session_lengths
        on daily_players.activity_date = daily_session_lengths.activity_date
        and daily_players.game_id = daily_session_lengths.game_id
    left join daily_revenue
        on daily_players.activity_date = daily_revenue.activity_date
        and daily_players.game_id = daily_revenue.game_id
    left join daily_ad_revenue
        on daily_players.activity_date = daily_ad_revenue.activity_date
        and daily_players.game_id = daily_ad_revenue.game_id

),

final as (

    select
        -- keys
        activity_date,
        game_id,

        -- players
        cast(dau as {{ type_integer() }}) as dau,
        cast(new_players as {{ type_integer() }}) as new_players,
        cast(mau as {{ type_integer() }}) as mau,

        -- sessions
        cast(sessions as {{ type_integer() }}) as sessions,
        cast({{ round_ratio('total_duration_s', 'ended_sessions', 9, 2) }} as {{ type_rounded(2) }}) as avg_session_length_s,

        -- money (USD)
        revenue_usd,
        cast(payers as {{ type_integer() }}) as payers,
        ad_revenue_usd,
        cast({{ round_ratio('revenue_usd + ad_revenue_usd', 'dau', 2, 4) }} as {{ type_ratio() }}) as arpdau,
        cast({{ round_ratio('revenue_usd', 'payers', 2, 4) }} as {{ type_ratio() }}) as arppu

    from joined

)

select * from final
