//! Naming rules shared by workloads, containers, volumes, nodes and labels, and "did you mean"
//! suggestions for misspelled names.

/// Checks an RFC 1123 DNS label: 1 to 63 lower-case letters, digits and `-`, starting and
/// ending with a letter or digit. Used for workload, container, volume and node names.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1 to 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"
        ))
    }
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of 1 to 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|p| check_dns_label(p).is_ok());
        if !valid {
            return Err(format!(
                "`{key}` has an invalid prefix: use a DNS name such as `example.com/`"
            ));
        }
    }
    if is_label_word(name) {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a valid label key: use 1 to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        ))
    }
}

/// Checks a label value: empty, or like a label key's name part.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_word(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a valid label value: use at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        ))
    }
}

fn is_label_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 63
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && word.starts_with(|c: char| c.is_ascii_alphanumeric())
        && word.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks an environment variable name: a letter or `_`, then letters, digits and `_`.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid environment variable name: use letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// The closest candidate to a misspelled `word`, if one is close enough to be what was meant.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                c,
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
            )
        })
        .filter(|(c, d)| *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_follow_rfc_1123() {
        for good in ["a", "sensor-reader", "x1", &"a".repeat(63)] {
            assert!(check_dns_label(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Sensor", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_may_carry_a_dns_prefix() {
        assert!(check_label_key("role").is_ok());
        assert!(check_label_key("shoal.dev/site").is_ok());
        assert!(check_label_key("Site_Name.x").is_ok());
        assert!(check_label_key("/site").is_err());
        assert!(check_label_key("a b").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("plant-1").is_ok());
        assert!(check_label_value("-x").is_err());
    }

    #[test]
    fn suggestions_find_near_misses_only() {
        let fields = ["memory", "cpu", "pids"];
        assert_eq!(suggest("memroy", &fields), Some("memory"));
        assert_eq!(suggest("Memory", &fields), Some("memory"));
        assert_eq!(suggest("cpus", &fields), Some("cpu"));
        assert_eq!(suggest("storage", &fields), None);
    }
}
