//! Pure formatting shared by the CLI commands that talk to the hub: kubectl-style ages, UTC
//! timestamps, and a small block-style YAML emitter (tables are [`shoal_model::table`],
//! shared with the agent's CLI). Nothing here does IO or reads the clock: the commands pass
//! the time in.

use serde_json::Value;

/// `-o` for `shoal get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The table with more columns
    Wide,
    /// The hub's JSON, pretty-printed
    Json,
    /// The same data as YAML
    Yaml,
}

/// What a table cell shows when there is nothing to show.
pub const NONE: &str = "<none>";

/// How long ago `then_ms` was at `now_ms`, the way kubectl prints ages: `45s`, `3m20s`, `25m`,
/// `5h10m`, `30h`, `3d4h`, `200d`, `3y10d`. Times in the future by more than a second (clock
/// skew between a device and the hub) print as `<future>`.
pub fn age(then_ms: u64, now_ms: u64) -> String {
    if then_ms > now_ms.saturating_add(1_000) {
        return "<future>".to_string();
    }
    let seconds = now_ms.saturating_sub(then_ms) / 1_000;
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_rest(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_rest(value: u64, unit: &str, rest: u64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{value}{unit}")
    } else {
        format!("{value}{unit}{rest}{rest_unit}")
    }
}

/// An age, or [`NONE`] when there is no time.
pub fn age_or_none(then_ms: Option<u64>, now_ms: u64) -> String {
    then_ms.map_or_else(|| NONE.to_string(), |t| age(t, now_ms))
}

/// A UTC timestamp, `2024-05-01T10:00:00Z`.
pub fn utc(ms: u64) -> String {
    let seconds = ms / 1_000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `k=v,k2=v2`, or [`NONE`] for no labels.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let joined: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if joined.is_empty() {
        NONE.to_string()
    } else {
        joined.join(",")
    }
}

/// Pretty JSON with a final newline.
pub fn json(value: &Value) -> String {
    let mut out = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    out.push('\n');
    out
}

/// Block-style YAML for a JSON value, with a final newline. Strings that could read as
/// anything but the same string (numbers, booleans, null, indicators, spaces, `: `, `#`, ...)
/// are written as JSON double-quoted strings, which YAML reads the same way.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    for line in yaml_lines(value) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn yaml_lines(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut lines = Vec::new();
            for (key, value) in map {
                let key = yaml_string(key);
                if is_block(value) {
                    lines.push(format!("{key}:"));
                    lines.extend(yaml_lines(value).into_iter().map(|l| format!("  {l}")));
                } else {
                    lines.push(format!("{key}: {}", yaml_scalar(value)));
                }
            }
            lines
        }
        Value::Array(items) if !items.is_empty() => {
            let mut lines = Vec::new();
            for item in items {
                for (i, line) in yaml_lines(item).into_iter().enumerate() {
                    lines.push(if i == 0 {
                        format!("- {line}")
                    } else {
                        format!("  {line}")
                    });
                }
            }
            lines
        }
        scalar => vec![yaml_scalar(scalar)],
    }
}

/// A non-empty mapping or sequence, written on the lines below its key.
fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
    }
}

/// A string as a plain scalar when that is unambiguous, else JSON double-quoted.
fn yaml_string(text: &str) -> String {
    if is_plain_safe(text) {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
    }
}

/// Words that YAML 1.1 or 1.2 readers take for booleans or null.
const YAML_WORDS: [&str; 11] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf",
];

/// Conservative: starts with a letter or `/`, then only letters, digits and `_ . - / @ + :`,
/// no `:` at the end, and not a word that reads as a boolean or null.
fn is_plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/@+:".contains(c))
        && !text.ends_with(':')
        && !YAML_WORDS.contains(&text.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_like_kubectl() {
        const S: u64 = 1_000;
        const M: u64 = 60 * S;
        const H: u64 = 60 * M;
        const D: u64 = 24 * H;
        let now = 10_000 * D;
        let cases = [
            ("just_now", 0, "0s"),
            ("seconds_up_to_two_minutes", 119 * S, "119s"),
            (
                "minutes_and_seconds_under_ten_minutes",
                3 * M + 20 * S,
                "3m20s",
            ),
            ("whole_minutes_drop_the_seconds", 3 * M, "3m"),
            ("minutes_under_three_hours", 150 * M + 59 * S, "150m"),
            (
                "hours_and_minutes_under_eight_hours",
                5 * H + 10 * M,
                "5h10m",
            ),
            ("hours_under_two_days", 30 * H + 59 * M, "30h"),
            ("days_and_hours_under_eight_days", 3 * D + 4 * H, "3d4h"),
            ("whole_days_drop_the_hours", 4 * D, "4d"),
            ("days_under_two_years", 200 * D, "200d"),
            ("years_and_days", 3 * 365 * D + 10 * D, "3y10d"),
        ];
        for (name, ago, expected) in cases {
            assert_eq!(age(now - ago, now), expected, "{name}");
        }
        assert_eq!(age(9 * 365 * D, 18 * 365 * D), "9y", "years_past_eight");
        assert_eq!(
            age(now + 2 * S, now),
            "<future>",
            "clock_skew_past_a_second"
        );
        assert_eq!(age(now + S, now), "0s", "one_second_ahead_is_now");
        assert_eq!(age_or_none(None, now), "<none>", "no_time");
    }

    #[test]
    fn utc_timestamps_follow_the_calendar() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_714_557_600_123, "2024-05-01T10:00:00Z"),
            (4_102_444_799_000, "2099-12-31T23:59:59Z"),
        ];
        for (ms, expected) in cases {
            assert_eq!(utc(ms), expected, "{ms}");
        }
    }

    #[test]
    fn labels_join_as_key_equals_value_or_none() {
        let mut map = std::collections::BTreeMap::new();
        assert_eq!(labels(&map), "<none>");
        map.insert("site".to_string(), "north".to_string());
        map.insert("role".to_string(), "gateway".to_string());
        assert_eq!(labels(&map), "role=gateway,site=north");
    }

    #[test]
    fn yaml_writes_nested_mappings_and_sequences_in_block_style() {
        let value = json!([
            {
                "empty": {},
                "events": [],
                "facts": null,
                "labels": {"role": "gateway"},
                "name": "gw-1",
                "nested": [[1, 2], {"a": {"b": 1.5}}],
                "online": true,
                "workloads": ["sensor-reader", "web"],
            }
        ]);
        assert_eq!(
            yaml(&value),
            "- empty: {}\n\
             \x20 events: []\n\
             \x20 facts: null\n\
             \x20 labels:\n\
             \x20   role: gateway\n\
             \x20 name: gw-1\n\
             \x20 nested:\n\
             \x20   - - 1\n\
             \x20     - 2\n\
             \x20   - a:\n\
             \x20       b: 1.5\n\
             \x20 online: true\n\
             \x20 workloads:\n\
             \x20   - sensor-reader\n\
             \x20   - web\n"
        );
    }

    #[test]
    fn yaml_top_level_scalars_and_empty_collections_stand_alone() {
        assert_eq!(yaml(&json!([])), "[]\n");
        assert_eq!(yaml(&json!({})), "{}\n");
        assert_eq!(yaml(&json!("yes")), "\"yes\"\n");
        assert_eq!(yaml(&json!(42)), "42\n");
    }

    #[test]
    fn yaml_quotes_every_string_that_could_read_as_something_else() {
        let cases = [
            ("plain_word", "gateway", "gateway"),
            (
                "image_reference",
                "reg.example:5000/a/b@sha256:ab",
                "reg.example:5000/a/b@sha256:ab",
            ),
            ("absolute_path", "/var/lib/shoal", "/var/lib/shoal"),
            ("empty", "", "\"\""),
            ("boolean_word", "true", "\"true\""),
            ("yaml_1_1_boolean_in_capitals", "No", "\"No\""),
            ("null_word", "null", "\"null\""),
            ("tilde", "~", "\"~\""),
            ("integer", "123", "\"123\""),
            ("float", "1.5", "\"1.5\""),
            ("leading_dot", ".inf", "\".inf\""),
            ("ip_address", "10.0.0.1", "\"10.0.0.1\""),
            ("space", "two words", "\"two words\""),
            ("colon_space", "a: b", "\"a: b\""),
            ("trailing_colon", "key:", "\"key:\""),
            ("comment", "a #b", "\"a #b\""),
            ("leading_dash", "-x", "\"-x\""),
            ("indicator", "*ref", "\"*ref\""),
            ("quote", "say \"hi\"", "\"say \\\"hi\\\"\""),
            ("newline", "a\nb", "\"a\\nb\""),
            ("control_character", "a\u{1}", "\"a\\u0001\""),
            ("non_ascii", "café", "\"café\""),
        ];
        for (name, text, expected) in cases {
            assert_eq!(yaml_string(text), expected, "{name}");
        }
    }

    #[test]
    fn yaml_quotes_keys_like_values() {
        assert_eq!(
            yaml(&json!({"a b": 1, "ok": 3, "on": 2})),
            "\"a b\": 1\nok: 3\n\"on\": 2\n"
        );
    }
}
