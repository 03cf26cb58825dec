//! Quantities with units, as written in manifests: memory (`64Mi`), CPU (`0.5`, `500m`),
//! durations (`30s`, `1m30s`), and "count or percentage" amounts (`10%`, `2`).
//!
//! Every parser here is total: it returns an error message for any input and never panics.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Parses a memory size: plain bytes, binary units (`Ki`, `Mi`, `Gi`, `Ti`) or decimal units
/// (`k`, `M`, `G`, `T`), as in Kubernetes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` is not a memory size: use a number with a unit such as `64Mi`, `1Gi` or `512M`"
            ))
        }
    };
    let value = parse_decimal(number).ok_or_else(|| {
        format!("`{text}` is not a memory size: use a number with a unit such as `64Mi`, `1Gi` or `512M`")
    })?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a CPU amount into millicores: `0.5`, `2`, `500m`.
pub fn parse_millicpu(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let bad =
        || format!("`{text}` is not a CPU amount: use cores (`0.5`, `2`) or millicores (`500m`)");
    let millis = if let Some(number) = text.strip_suffix('m') {
        let value: u64 = number.parse().map_err(|_| bad())?;
        value as f64
    } else {
        parse_decimal(text).ok_or_else(bad)? * 1000.0
    };
    if millis > f64::from(u32::MAX) {
        return Err(format!("`{text}` is too large"));
    }
    Ok(millis.round() as u32)
}

/// Parses a duration: a sequence of `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`
/// (`30s`, `1m30s`, `500ms`). A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!("`{text}` is not a duration: use a number with a unit such as `500ms`, `30s`, `5m` or `1h`")
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: write `{text}s` for seconds, or use `ms`, `m` or `h`"
        ));
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let value: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ms = total_ms
            .checked_add(value.checked_mul(factor).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    let ms = u64::try_from(total_ms).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(ms))
}

/// A non-negative decimal with at most one dot, no exponent, no sign.
fn parse_decimal(text: &str) -> Option<f64> {
    if text.is_empty()
        || text.starts_with('.')
        || text.ends_with('.')
        || !text.chars().all(|c| c.is_ascii_digit() || c == '.')
        || text.matches('.').count() > 1
    {
        return None;
    }
    text.parse().ok()
}

/// Formats a byte count the way people write it in manifests (`64Mi`, `1.5Gi`, `100`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{}{unit}", bytes / size)
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    bytes.to_string()
}

/// Formats millicores as cores when whole (`2`) and as millicores otherwise (`500m`).
pub fn format_millicpu(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Formats a duration compactly (`1m30s`, `500ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// A number of items or a percentage of a total (`maxUnavailable: 10%` or `2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Amount {
    Count(u32),
    /// Percent, 0 to 100.
    Percent(u8),
}

impl Amount {
    /// Parses `10%` or `2`.
    pub fn parse(text: &str) -> Result<Amount, String> {
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            match number.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Amount::Percent(p)),
                _ => Err(format!("`{text}` is not a percentage between 0% and 100%")),
            }
        } else {
            text.parse::<u32>()
                .map(Amount::Count)
                .map_err(|_| format!("`{text}` is not a count (`2`) or a percentage (`10%`)"))
        }
    }

    /// The amount out of `total`, rounding percentages down but never below one when the
    /// percentage is non-zero and the total is not empty (so `10%` of 3 nodes still moves).
    pub fn of(self, total: u32) -> u32 {
        match self {
            Amount::Count(n) => n.min(total),
            Amount::Percent(0) => 0,
            Amount::Percent(p) => {
                let share = (u64::from(total) * u64::from(p) / 100) as u32;
                if total > 0 {
                    share.max(1)
                } else {
                    0
                }
            }
        }
    }
}

/// `d` in whole milliseconds, saturating at `u64::MAX` (about 584 million years): how
/// durations meet the millisecond clocks of the hub and the agent.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_with_binary_and_decimal_units() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("64Mi", Ok(64 << 20)),
            ("1Gi", Ok(1 << 30)),
            ("1.5Gi", Ok(3 << 29)),
            ("512M", Ok(512_000_000)),
            ("100", Ok(100)),
            ("4k", Ok(4000)),
            ("64MB", Err(())),
            ("-1Mi", Err(())),
            ("Mi", Err(())),
            ("", Err(())),
            ("1e9", Err(())),
            ("99999999999999Ti", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_bytes(text).map_err(|_| ()), *expected, "{text}");
        }
    }

    #[test]
    fn cpu_amounts_parse_as_cores_or_millicores() {
        let cases: &[(&str, Result<u32, ()>)] = &[
            ("0.5", Ok(500)),
            ("2", Ok(2000)),
            ("500m", Ok(500)),
            ("0.25", Ok(250)),
            ("1.5m", Err(())),
            ("half", Err(())),
            ("-1", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_millicpu(text).map_err(|_| ()), *expected, "{text}");
        }
    }

    #[test]
    fn durations_parse_compound_units_and_round_trip() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("30s", Ok(30_000)),
            ("500ms", Ok(500)),
            ("1m30s", Ok(90_000)),
            ("2h", Ok(7_200_000)),
            ("1d", Ok(86_400_000)),
            ("0", Ok(0)),
            ("10", Err(())),
            ("1.5s", Err(())),
            ("s", Err(())),
            ("5 s", Err(())),
            ("99999999999999999999d", Err(())),
        ];
        for (text, expected) in cases {
            let got = parse_duration(text)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| ());
            assert_eq!(got, *expected, "{text}");
        }
        for text in ["30s", "1m30s", "500ms", "2h", "1d1h1m1s1ms"] {
            let parsed = parse_duration(text).expect("valid duration");
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn amounts_count_at_least_one_for_a_nonzero_percentage() {
        assert_eq!(Amount::parse("10%"), Ok(Amount::Percent(10)));
        assert_eq!(Amount::parse("3"), Ok(Amount::Count(3)));
        assert!(Amount::parse("101%").is_err());
        assert!(Amount::parse("-1").is_err());
        assert_eq!(Amount::Percent(10).of(3), 1);
        assert_eq!(Amount::Percent(50).of(10), 5);
        assert_eq!(Amount::Percent(0).of(10), 0);
        assert_eq!(Amount::Percent(10).of(0), 0);
        assert_eq!(Amount::Count(5).of(2), 2);
    }

    #[test]
    fn formatting_matches_what_people_write() {
        assert_eq!(format_bytes(64 << 20), "64Mi");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
        assert_eq!(format_bytes(100), "100");
        assert_eq!(format_millicpu(500), "500m");
        assert_eq!(format_millicpu(2000), "2");
    }
}
