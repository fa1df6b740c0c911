//! State signatures and upgrade matching, from SQL through DataFusion's
//! optimized plan: what keeps an operator's signature (anything above it,
//! aliases, formatting) and what changes it (its window, keys,
//! accumulators, a filter below it), with the reason an upgrade gives.

use weir_runtime::plan::StateSignature;

use super::plan_stream;
use super::tests::{bids_inputs, windowed_bids_plan};
use super::upgrade::{Compatibility, OperatorState, match_operators};

/// The stateful operators' signatures and the whole plan's of `sql` over
/// the stream `bids` (windows rewritten as a view's are).
async fn signed(sql: &str) -> (Vec<StateSignature>, String) {
    signed_with_ttl(sql, None).await
}

/// [`signed`], the view's `join_state_ttl` being `ttl`.
async fn signed_with_ttl(sql: &str, ttl: Option<i64>) -> (Vec<StateSignature>, String) {
    let (windows, plan) = windowed_bids_plan(sql).await;
    let inputs = bids_inputs();
    let uses = super::QueryUses {
        windows: &windows,
        lookups: &[],
        join_state_ttl: ttl,
    };
    let (plan, _) = plan_stream(&plan, uses, false, 2, &inputs).expect("stream plan");
    (plan.state, plan.signature)
}

const BASE: &str = "SELECT auction, window_start, count(*) AS bids, max(price) AS top \
    FROM TUMBLE(bids, date_time, INTERVAL '1 minute') WHERE price > 10 \
    GROUP BY auction, window_start";

/// The reason `new` cannot keep `old`'s state, or `None` when it can.
async fn refusal(old: &str, new: &str) -> Option<String> {
    let (old, _) = signed(old).await;
    let (new, _) = signed(new).await;
    match match_operators(&old, &new).compatibility() {
        Compatibility::Keeps(_) => None,
        Compatibility::Refused { operator, reason } => Some(format!("{operator}: {reason}")),
    }
}

#[tokio::test]
async fn what_sits_above_an_aggregate_keeps_its_signature() {
    let (base, whole) = signed(BASE).await;
    assert_eq!(base.len(), 1, "one stateful operator: {base:?}");
    assert_eq!(base[0].operator, "StreamWindowAggregate");
    assert_eq!(base[0].window, "TUMBLE(1min)");
    for above in [
        // a filter on the aggregate's output
        "SELECT auction, window_start, count(*) AS bids, max(price) AS top \
         FROM TUMBLE(bids, date_time, INTERVAL '1 minute') WHERE price > 10 \
         GROUP BY auction, window_start HAVING count(*) > 2",
        // a new output column computed from kept ones, other aliases
        "SELECT auction AS a, window_start, count(*) AS n, max(price) AS best, max(price) * 2 AS twice \
         FROM TUMBLE(bids, date_time, INTERVAL '1 minute') WHERE price > 10 \
         GROUP BY auction, window_start",
        // other formatting and a table alias
        "select b.auction, window_start, COUNT(*) as bids, MAX(b.price) as top from \
         tumble(bids, date_time, interval '1 minute') b where b.price > 10 group by b.auction, window_start",
    ] {
        let (signed_above, other_whole) = signed(above).await;
        assert_eq!(signed_above.len(), 1, "{above}");
        assert_eq!(
            signed_above[0].hash, base[0].hash,
            "{above}\n{:#?}\n{:#?}",
            signed_above[0], base[0]
        );
        assert_eq!(refusal(BASE, above).await, None, "{above}");
        if above.contains("HAVING") || above.contains("twice") {
            assert_ne!(whole, other_whole, "the whole plan differs: {above}");
        }
    }
}

#[tokio::test]
async fn a_window_key_accumulator_or_filter_below_changes_it_and_says_which() {
    let cases = [
        (
            BASE.replace("'1 minute'", "'5 minutes'"),
            "StreamWindowAggregate: the window changed from TUMBLE(1min) to TUMBLE(5min)",
        ),
        (
            BASE.replace(
                "GROUP BY auction, window_start",
                "GROUP BY auction, bidder, window_start",
            )
            .replace("SELECT auction,", "SELECT auction, bidder,"),
            "StreamWindowAggregate: the keys changed from [auction, window_start] to [auction, bidder, window_start]",
        ),
        (
            BASE.replace(
                "max(price) AS top",
                "max(price) AS top, sum(price) AS total",
            ),
            "StreamWindowAggregate: a new accumulator sum(price) has no state",
        ),
        (
            BASE.replace("price > 10", "price > 20"),
            "StreamWindowAggregate: its input changed: a filter below it differs",
        ),
        (
            BASE.replace(" WHERE price > 10", ""),
            "StreamWindowAggregate: its input changed: a filter below it was removed",
        ),
    ];
    let (base, _) = signed(BASE).await;
    for (new, reason) in cases {
        let (changed, _) = signed(&new).await;
        assert_ne!(changed[0].hash, base[0].hash, "{new}");
        assert_eq!(refusal(BASE, &new).await.as_deref(), Some(reason), "{new}");
    }
}

#[tokio::test]
async fn an_aggregate_added_or_removed_is_refused_and_explained() {
    let plain = "SELECT auction, price FROM bids WHERE price > 10";
    let (old, _) = signed(plain).await;
    let (new, _) = signed(BASE).await;
    let matching = match_operators(&old, &new);
    assert!(matches!(
        &matching.operators[0].1,
        OperatorState::New { reason } if reason.contains("no aggregate")
    ));
    assert!(matches!(
        matching.compatibility(),
        Compatibility::Refused { .. }
    ));
    assert_eq!(
        refusal(BASE, plain)
            .await
            .map(|r| r.starts_with("StreamWindowAggregate: its state has no place")),
        Some(true)
    );
    assert_eq!(
        refusal(plain, plain).await,
        None,
        "no state, nothing to match"
    );
}

#[tokio::test]
async fn a_join_has_a_signature_of_its_own_and_the_aggregate_over_it_another() {
    let sql = "SELECT a.auction, count(*) AS n FROM bids a JOIN bids b ON a.auction = b.auction \
               WHERE b.price > 500 GROUP BY a.auction";
    let (state, _) = signed(sql).await;
    let names: Vec<&str> = state.iter().map(|s| s.operator.as_str()).collect();
    assert_eq!(names, ["StreamHashJoin", "StreamGroupAggregate"]);
    assert_eq!(refusal(sql, sql).await, None);
    let other = sql.replace("b.price > 500", "b.price > 600");
    let reason = refusal(sql, &other).await.expect("refused");
    assert!(
        reason.starts_with(
            "StreamHashJoin: its input changed: its right input: a filter below it differs"
        ),
        "{reason}"
    );
}

#[tokio::test]
async fn a_join_state_ttl_is_part_of_the_joins_signature() {
    const JOIN: &str = "SELECT a.auction, a.price, b.bidder FROM bids AS a JOIN bids AS b ON a.auction = b.auction";
    const HOUR: i64 = 3_600_000_000_000;
    let (forever, _) = signed_with_ttl(JOIN, None).await;
    let (hour, _) = signed_with_ttl(JOIN, Some(HOUR)).await;
    let (two_hours, _) = signed_with_ttl(JOIN, Some(2 * HOUR)).await;
    assert_eq!(forever[0].window, "none");
    assert_eq!(
        hour[0].window,
        "join_state_ttl 1h (event-time columns 2 and 2)"
    );
    assert_ne!(forever[0].hash, hour[0].hash);
    assert_ne!(hour[0].hash, two_hours[0].hash);
    let Compatibility::Refused { reason, .. } = match_operators(&hour, &two_hours).compatibility()
    else {
        panic!("a changed TTL cannot keep the join's state");
    };
    assert!(reason.contains("join_state_ttl 1h"), "{reason}");
    // An aggregate alone has no join: the setting changes nothing.
    assert_eq!(
        signed_with_ttl(BASE, Some(HOUR)).await.0,
        signed(BASE).await.0
    );
}

#[tokio::test]
async fn windows_of_processing_time_do_not_keep_windows_of_event_time() {
    let proctime = BASE.replace("date_time", "PROCTIME()");
    let (signed_proctime, _) = signed(&proctime).await;
    let (base, _) = signed(BASE).await;
    assert_ne!(
        signed_proctime[0].hash, base[0].hash,
        "event-time windows kept over processing time"
    );
    let reason = refusal(BASE, &proctime).await;
    assert!(
        reason.is_some(),
        "an upgrade between the two kept the state"
    );
    // Processing time to processing time keeps them.
    assert_eq!(refusal(&proctime, &proctime).await, None);
}
