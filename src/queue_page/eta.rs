//! When a queued record may land: the median of its lane's recent landing durations (from
//! the decision log) times its place in the lane's queue. Without a landing of that lane
//! on record the answer is "unknown", never a guess.

use std::collections::HashMap;
use std::time::Duration;

use crate::queue_report::history::History;
use crate::store::Scan;

/// Landings per lane the median is taken over (the newest).
pub const SAMPLES_PER_LANE: usize = 20;

/// A lane as the page groups records: repo identity (or path) and base branch.
pub type LaneName = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eta {
    Unknown,
    In(Duration),
}

impl Eta {
    /// `position` is 1 for the record that lands next in its lane.
    pub fn of(median: Option<Duration>, position: usize) -> Eta {
        match median {
            Some(each) => Eta::In(each.saturating_mul(u32::try_from(position).unwrap_or(u32::MAX))),
            None => Eta::Unknown,
        }
    }

    /// `~ 4m 10s`, `~ 1h 2m`, or `unknown`.
    pub fn describe(self) -> String {
        let Eta::In(left) = self else {
            return "unknown".into();
        };
        let secs = left.as_secs();
        let text = match secs {
            0..60 => format!("{secs}s"),
            60..3600 => format!("{}m {}s", secs / 60, secs % 60),
            _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        };
        format!("~ {text}")
    }
}

/// The median of `durations` (the lower middle of an even count); `None` when empty.
pub fn median(durations: &[Duration]) -> Option<Duration> {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Each lane's median landing duration over its newest [`SAMPLES_PER_LANE`] landings. A
/// landing's lane is its record's, which the queue dir still holds once landed; landings of
/// records no longer there are not counted.
pub fn lane_medians(history: &History, scan: &Scan) -> HashMap<LaneName, Duration> {
    let lanes: HashMap<&str, LaneName> = scan
        .records
        .iter()
        .map(|s| {
            let lane = (s.record.identity_or_path(), s.record.base_branch.clone());
            (s.id.as_str(), lane)
        })
        .collect();
    let mut samples: HashMap<LaneName, Vec<Duration>> = HashMap::new();
    for landing in history.landings.iter().rev() {
        if let Some(lane) = lanes.get(landing.record.as_str()) {
            let lane_samples = samples.entry(lane.clone()).or_default();
            if lane_samples.len() < SAMPLES_PER_LANE {
                lane_samples.push(landing.took);
            }
        }
    }
    samples
        .into_iter()
        .filter_map(|(lane, durations)| Some((lane, median(&durations)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_history_is_unknown_and_a_median_scales_with_the_position() {
        assert_eq!(Eta::of(None, 1).describe(), "unknown");
        let each = median(&[
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(30),
        ]);
        assert_eq!(each, Some(Duration::from_secs(30)));
        assert_eq!(Eta::of(each, 1).describe(), "~ 30s");
        assert_eq!(Eta::of(each, 3).describe(), "~ 1m 30s");
        assert_eq!(
            Eta::of(Some(Duration::from_secs(3720)), 1).describe(),
            "~ 1h 2m"
        );
        assert_eq!(median(&[]), None);
        assert_eq!(
            median(&[Duration::from_secs(4), Duration::from_secs(2)]),
            Some(Duration::from_secs(2))
        );
    }
}
