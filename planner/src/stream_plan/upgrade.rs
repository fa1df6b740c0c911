//! Upgrades that keep state (design 0008): an old and a new version of a
//! continuous query have their stateful operators matched by state
//! signature ([`super::signature`]). Each new operator either keeps the
//! state of an old one with the same signature or starts with none; the
//! upgrade keeps state only when every operator of both versions is
//! matched, since an operator without state for the rows already read
//! would not give what an uninterrupted run of the new query gives.
//!
//! When an operator is not matched, its signature's parts are compared
//! with those of the old operator in its place to say why: "the window
//! changed from TUMBLE(1min) to TUMBLE(5min)", "its input changed: a filter
//! below it differs", "a new accumulator sum(price) has no state".
//!
//! Source positions need no matching of their own: every source is part of
//! the signature of each stateful operator above it, so matched operators
//! read the same sources and partitions, which resume where the old version
//! stopped.

use weir_runtime::plan::StateSignature;

/// How `CREATE OR REPLACE` treats the old version's state
/// (`WITH (upgrade_strategy = ...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStrategy {
    /// Keep it where the planner proves it compatible, refuse otherwise
    /// (the default).
    Stateful,
    /// Start the new version from the beginning of its inputs.
    Stateless,
}

impl UpgradeStrategy {
    /// The option's name in `WITH (...)`.
    pub const OPTION: &'static str = "upgrade_strategy";

    /// The strategy a value names, if it names one.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "stateful" => Some(Self::Stateful),
            "stateless" => Some(Self::Stateless),
            _ => None,
        }
    }

    /// Its name, as written in `WITH (...)`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stateful => "stateful",
            Self::Stateless => "stateless",
        }
    }
}

/// What happens to one stateful operator of the new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorState {
    /// It keeps the state of the old version's operator of that name.
    Kept {
        /// The old operator.
        from: String,
    },
    /// It starts without state, for this reason.
    New {
        /// Why no old operator's state fits.
        reason: String,
    },
}

/// The matching of an old and a new version's stateful operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// Each operator of the new version (its EXPLAIN name) and its state.
    pub operators: Vec<(String, OperatorState)>,
    /// Operators of the old version whose state nothing in the new version
    /// keeps, with the reason.
    pub dropped: Vec<(String, String)>,
    /// For each operator of the new version, the old one it keeps.
    pub from: Vec<Option<usize>>,
}

/// Can the new version keep the old one's state?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compatibility {
    /// Yes: each new operator (by index) keeps the state of the old one
    /// (by index) paired with it.
    Keeps(Vec<(usize, usize)>),
    /// No: the first operator that cannot, and why.
    Refused {
        /// The operator (its EXPLAIN name).
        operator: String,
        /// Why.
        reason: String,
    },
}

/// Match `new`'s stateful operators with `old`'s (both in worker order, as
/// in `StreamPlan::state`).
pub fn match_operators(old: &[StateSignature], new: &[StateSignature]) -> Matching {
    let mut taken = vec![false; old.len()];
    let mut operators = Vec::with_capacity(new.len());
    let mut from = Vec::with_capacity(new.len());
    for (i, n) in new.iter().enumerate() {
        let same = (0..old.len()).find(|&o| !taken[o] && old[o].hash == n.hash);
        from.push(same);
        let state = match same {
            Some(o) => {
                taken[o] = true;
                OperatorState::Kept {
                    from: old[o].operator.clone(),
                }
            }
            None => OperatorState::New {
                reason: match counterpart(old, &taken, n, i) {
                    Some(o) => difference(&old[o], n),
                    None => format!(
                        "the old version has no {} whose state it could keep",
                        noun(n)
                    ),
                },
            },
        };
        operators.push((n.operator.clone(), state));
    }
    let dropped = old
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(o, _)| {
            (
                o.operator.clone(),
                format!("its state has no place in the new version, which has no {} with the same input, keys, window and accumulators", noun(o)),
            )
        })
        .collect();
    Matching {
        operators,
        dropped,
        from,
    }
}

impl Matching {
    /// Keep the state, or refuse with the first unmatched operator.
    pub fn compatibility(&self) -> Compatibility {
        let mut pairs = Vec::new();
        for (i, (operator, state)) in self.operators.iter().enumerate() {
            match state {
                OperatorState::New { reason } => {
                    return Compatibility::Refused {
                        operator: operator.clone(),
                        reason: reason.clone(),
                    };
                }
                OperatorState::Kept { .. } => pairs.push((i, self.from[i].unwrap_or(i))),
            }
        }
        if let Some((operator, reason)) = self.dropped.first() {
            return Compatibility::Refused {
                operator: operator.clone(),
                reason: reason.clone(),
            };
        }
        Compatibility::Keeps(pairs)
    }
}

/// The old operator to compare an unmatched new one with: one of the same
/// name not kept by another, else the one at the same place.
fn counterpart(
    old: &[StateSignature],
    taken: &[bool],
    new: &StateSignature,
    at: usize,
) -> Option<usize> {
    (0..old.len())
        .find(|&o| !taken[o] && old[o].operator == new.operator)
        .or_else(|| (at < old.len() && !taken[at]).then_some(at))
}

fn noun(signature: &StateSignature) -> &'static str {
    if signature.operator == "StreamHashJoin" {
        "join"
    } else {
        "aggregate"
    }
}

/// Why `new` cannot keep `old`'s state: the first part that differs, in
/// the order a reader would look for it.
pub fn difference(old: &StateSignature, new: &StateSignature) -> String {
    if old.kind != new.kind {
        return format!("the operator changed from a {} to a {}", old.kind, new.kind);
    }
    if old.window != new.window {
        return format!("the window changed from {} to {}", old.window, new.window);
    }
    // Keys and accumulators as written first: a change there usually
    // changes the columns read too, and the input is then only the echo.
    if old.shown.keys != new.shown.keys {
        return format!(
            "the keys changed from [{}] to [{}]",
            old.shown.keys.join(", "),
            new.shown.keys.join(", ")
        );
    }
    if let Some(added) = new
        .shown
        .accumulators
        .iter()
        .find(|a| !old.shown.accumulators.contains(a))
    {
        return format!("a new accumulator {added} has no state");
    }
    if let Some(removed) = old
        .shown
        .accumulators
        .iter()
        .find(|a| !new.shown.accumulators.contains(a))
    {
        return format!(
            "the accumulator {removed} was removed, and the others' state is kept with it"
        );
    }
    if old.input != new.input {
        return format!(
            "its input changed: {}",
            input_difference(&old.input, &new.input)
        );
    }
    if old.keys != new.keys {
        return "its keys read other columns of its input".into();
    }
    if old.accumulators != new.accumulators {
        return "the accumulators are in another order, and their state is kept by position".into();
    }
    if old.layout != new.layout {
        return format!(
            "its checkpoint layout changed from version {} to {}",
            old.layout, new.layout
        );
    }
    "its state signature differs".into()
}

/// The first layer (from the sources up) where two inputs differ; for a
/// join, in the first of its two inputs that differs.
fn input_difference(old: &[String], new: &[String]) -> String {
    for side in ["left", "right"] {
        let prefix = format!("{side}: ");
        let chain = |layers: &[String]| -> Option<Vec<String>> {
            let layer = layers
                .iter()
                .find_map(|l| l.strip_prefix(prefix.as_str()))?;
            Some(layer.split(" -> ").map(str::to_string).collect())
        };
        if let (Some(o), Some(n)) = (chain(old), chain(new))
            && o != n
        {
            return format!("its {side} input: {}", layer_difference(&o, &n));
        }
    }
    layer_difference(old, new)
}

/// The first layer (from the source up) where two chains differ.
fn layer_difference(old: &[String], new: &[String]) -> String {
    let what = |layer: &str| match layer.split_whitespace().next().unwrap_or_default() {
        "source" => "source",
        "filter" => "filter",
        "project" => "projection",
        "unnest" => "unnest",
        "join" | "left:" | "right:" => "join",
        _ => "aggregate",
    };
    let at = old
        .iter()
        .zip(new)
        .position(|(o, n)| o != n)
        .unwrap_or(old.len().min(new.len()));
    match (old.get(at), new.get(at)) {
        (Some(o), Some(n)) if what(o) == "source" || what(n) == "source" => {
            let name = |l: &str| l.split_whitespace().nth(1).unwrap_or_default().to_string();
            if name(o) != name(n) {
                format!("it reads \"{}\" instead of \"{}\"", name(n), name(o))
            } else {
                format!(
                    "the stream \"{}\" it reads differs (its connector, its columns read or its watermark)",
                    name(n)
                )
            }
        }
        (Some(o), Some(n)) if what(o) == what(n) => {
            format!("a {} below it differs", what(n))
        }
        (Some(o), Some(n)) => {
            let count = |layers: &[String], kind: &str| {
                layers.iter().filter(|l| what(l.as_str()) == kind).count()
            };
            if count(old, what(o)) > count(new, what(o)) {
                format!("a {} below it was removed", what(o))
            } else if count(new, what(n)) > count(old, what(n)) {
                format!("a {} was added below it", what(n))
            } else {
                format!("a {} below it became a {}", what(o), what(n))
            }
        }
        (None, Some(n)) => format!("a {} was added below it", what(n)),
        (Some(o), None) => format!("a {} below it was removed", what(o)),
        (None, None) => "its input differs".into(),
    }
}
