//! What changed between two revisions of a workload, one line per field, for `shoal diff` and
//! `shoal apply --dry-run`. Pure: compares the JSON forms of the two specs.

use serde_json::Value;

/// `+ path: value` for added fields, `- path: value` for removed ones, `~ path: old -> new` for
/// changed ones; paths like `spec.containers[0].image`. Empty when equal.
pub fn lines(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(&child, x, y, out),
                    (Some(x), None) => out.push(format!("- {child}: {}", show(x))),
                    (None, Some(y)) => out.push(format!("+ {child}: {}", show(y))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for index in 0..a.len().max(b.len()) {
                let child = format!("{path}[{index}]");
                match (a.get(index), b.get(index)) {
                    (Some(x), Some(y)) => walk(&child, x, y, out),
                    (Some(x), None) => out.push(format!("- {child}: {}", show(x))),
                    (None, Some(y)) => out.push(format!("+ {child}: {}", show(y))),
                    (None, None) => {}
                }
            }
        }
        _ => out.push(format!("~ {path}: {} -> {}", show(old), show(new))),
    }
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    const LONGEST: usize = 120;
    if text.chars().count() > LONGEST {
        let cut: String = text.chars().take(LONGEST).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_values_have_no_diff() {
        assert!(lines(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})).is_empty());
    }

    #[test]
    fn changed_added_and_removed_fields_each_get_a_line() {
        let old =
            json!({"spec": {"containers": [{"image": "a:1", "env": {"X": "1"}}], "old": true}});
        let new = json!({"spec": {"containers": [{"image": "a:2", "env": {"X": "1", "Y": "2"}}]}});
        assert_eq!(
            lines(&old, &new),
            [
                "+ spec.containers[0].env.Y: \"2\"",
                "~ spec.containers[0].image: \"a:1\" -> \"a:2\"",
                "- spec.old: true",
            ]
        );
    }

    #[test]
    fn a_longer_list_shows_the_added_entries() {
        assert_eq!(lines(&json!([1]), &json!([1, 5])), ["+ [1]: 5"]);
    }
}
