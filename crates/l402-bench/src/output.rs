//! Result lines and the small statistics the benchmarks report.
//!
//! Every figure is printed twice: a machine-readable line, `RESULT {json}` (one JSON object with a `figure`
//! name; `l402-bench report` reads these), and a human line below it.

use std::time::Duration;

use serde_json::{Map, Value};

/// The prefix of machine-readable result lines.
pub(crate) const PREFIX: &str = "RESULT ";

/// Prints one figure: the `RESULT` line, then the human line.
pub(crate) fn emit(figure: &str, fields: Value, human: &str) {
    let mut object = Map::new();
    object.insert("figure".into(), Value::String(figure.into()));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    println!("{PREFIX}{}", Value::Object(object));
    println!("  {figure}: {human}");
}

/// Progress for whoever watches the run (stderr, so result output stays clean).
pub(crate) fn note(message: &str) {
    eprintln!("l402-bench: {message}");
}

/// The median of a sample (nearest rank: the lower middle value for an even count); 0 when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile (nearest rank); 0 when empty.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Durations as microseconds.
pub(crate) fn micros(durations: &[Duration]) -> Vec<f64> {
    durations.iter().map(|d| d.as_secs_f64() * 1e6).collect()
}

/// Durations as milliseconds.
pub(crate) fn millis(durations: &[Duration]) -> Vec<f64> {
    durations.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

/// Rounds to `digits` decimals (for JSON that reads well).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
