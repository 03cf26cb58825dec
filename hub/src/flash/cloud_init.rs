//! Cloud-init's `user-data`, edited by `shoal flash` (pure): the first-boot hook becomes one
//! more item of the file's top-level `runcmd` list.
//!
//! Why a line-level edit and not parse-and-rewrite: a YAML library would write the file back
//! in its own style, dropping comments and reordering quoting, and the file is the operator's.
//! So the hook is inserted as text, where the list ends, and the result is then parsed
//! (`shoal_model::manifest::yaml`): the same keys and values, the list's items plus the hook,
//! or the edit is refused. Flashing again finds the hook and changes nothing.

use shoal_model::manifest::yaml::{parse_documents, Node, Value};

/// The `runcmd` item that runs the hook under cloud-init, wherever the boot partition is.
const HOOK: &str = "[sh, -c, 'for d in /boot/firmware /boot; do if [ -f \"$d/shoal-firstboot.sh\" ]; then exec sh \"$d/shoal-firstboot.sh\"; fi; done']";

/// cloud-init's `user-data` with the hook as one more item of its top-level `runcmd` (once),
/// every other byte kept; a `runcmd` list of its own is added when it has none. Block
/// (`- item` lines, at the indentation the file uses) and flow (`[a, b]`) lists are extended;
/// what cannot be edited safely is refused with the reason and what to do: not
/// `#cloud-config`, several documents, a `runcmd` that is an anchor, an alias, tagged, not a
/// list or given twice. The result is parsed again and must hold the file's items plus the
/// hook, or it is refused too.
pub fn user_data(text: &str) -> Result<String, String> {
    if text.contains(HOOK) {
        return Ok(text.to_string());
    }
    if !text.starts_with("#cloud-config") {
        return Err(format!(
            "user-data is not a #cloud-config file (a script, or MIME parts?), which shoal flash cannot extend: make it #cloud-config with this item in its runcmd, and flash again\n  - {HOOK}"
        ));
    }
    let edited = add_to_runcmd(text).map_err(|why| {
        format!(
            "user-data {why}; or add this item to its runcmd by hand, and flash again\n  - {HOOK}"
        )
    })?;
    check_runcmd_edit(text, &edited).map_err(|why| {
        format!("user-data could not be edited safely ({why}): add this item to its runcmd by hand, and flash again\n  - {HOOK}")
    })?;
    Ok(edited)
}

/// One line of a file: its text without the line end, and the line end (`\n`, `\r\n` or
/// nothing, for a last line without one).
fn lines_of(text: &str) -> Vec<(&str, &str)> {
    text.split_inclusive('\n')
        .map(|line| {
            let body = line.trim_end_matches('\n').trim_end_matches('\r');
            (body, &line[body.len()..])
        })
        .collect()
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether a line is blank or only a comment.
fn is_blank_or_comment(line: &str) -> bool {
    let rest = line.trim_start();
    rest.is_empty() || rest.starts_with('#')
}

/// The value after `runcmd:` on a top-level key line, or `None` when the line is another key.
fn runcmd_value(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("runcmd")?;
    let rest = rest.trim_start_matches(' ').strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some(rest.trim())
}

/// The textual edit (no parsing): why it cannot be made, in words for the user.
fn add_to_runcmd(text: &str) -> Result<String, String> {
    let lines = lines_of(text);
    let (mut seen_content, mut ended) = (false, false);
    for (line, _) in &lines {
        if is_blank_or_comment(line) {
            continue;
        }
        let start = *line == "---" || line.starts_with("--- ");
        if (start && seen_content) || ended {
            return Err("holds several YAML documents, and cloud-init reads one: keep one".into());
        }
        if *line == "..." {
            ended = true;
            continue;
        }
        if line.starts_with('{') {
            return Err("is one flow mapping (`{...}`): write it in block style".into());
        }
        if line.starts_with('\t') {
            return Err("indents a line with a tab, which YAML does not allow: use spaces".into());
        }
        if line.starts_with("\"runcmd\"") || line.starts_with("'runcmd'") {
            return Err("names runcmd in quotes: write it as `runcmd:`".into());
        }
        seen_content |= !start;
    }
    let keys: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, (line, _))| runcmd_value(line).is_some())
        .map(|(i, _)| i)
        .collect();
    let at = match keys.as_slice() {
        [] => return Ok(append_runcmd(text)),
        [at] => *at,
        _ => return Err("has runcmd twice: merge the two lists into one".into()),
    };
    let value = runcmd_value(lines[at].0).unwrap_or_default();
    let value = if value.starts_with('#') { "" } else { value };
    if value.starts_with('&') {
        return Err("gives runcmd an anchor (`&...`), so other keys may share the list: write the list out under runcmd without the anchor".into());
    }
    if value.starts_with('*') {
        return Err("makes runcmd an alias (`*...`) of a list defined elsewhere: write the list out under runcmd".into());
    }
    if value.starts_with('!') {
        return Err("gives runcmd a tag (`!...`): remove it".into());
    }
    if value.starts_with('[') {
        return add_to_flow(text, &lines, at);
    }
    if !value.is_empty() {
        return Err(format!(
            "has a runcmd that is not a list (`{value}`): make it a list of commands"
        ));
    }
    add_to_block(&lines, at)
}

/// No `runcmd` yet: one at the end.
fn append_runcmd(text: &str) -> String {
    let mut out = text.to_string();
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    if !out.ends_with('\n') {
        out.push_str(newline);
    }
    for line in [
        "# Added by `shoal flash`: installs and enrolls the Shoal agent.",
        "runcmd:",
    ] {
        out.push_str(line);
        out.push_str(newline);
    }
    out.push_str("  - ");
    out.push_str(HOOK);
    out.push_str(newline);
    out
}

/// `runcmd:` followed by `- item` lines (or by nothing: an empty runcmd).
fn add_to_block(lines: &[(&str, &str)], at: usize) -> Result<String, String> {
    // The items' indentation: the first line after the key that is not blank or a comment.
    let first = lines[at + 1..]
        .iter()
        .find(|(line, _)| !is_blank_or_comment(line))
        .map(|(line, _)| *line);
    let item_indent = match first {
        Some(line) if is_item(line) => indent_of(line),
        Some(line) if indent_of(line) > 0 => {
            return Err(format!(
            "has a runcmd whose first entry is not a `- ` item (`{}`): make it a list of commands",
            line.trim()
        ))
        }
        // `runcmd:` with nothing under it.
        _ => 2,
    };
    // The list goes on while lines are items at that indentation, are indented deeper (an
    // item's continuation), or are blank or comments no deeper than the items.
    let mut last = at;
    for (i, (line, _)) in lines.iter().enumerate().skip(at + 1) {
        let indent = indent_of(line);
        let rest = line.trim_start();
        if rest.is_empty() {
            continue;
        }
        if indent <= item_indent && line.trim_start_matches(' ').starts_with('\t') {
            return Err(
                "indents a line of runcmd with a tab, which YAML does not allow: use spaces".into(),
            );
        }
        if indent > item_indent || (indent == item_indent && is_item(line)) {
            last = i;
        } else if rest.starts_with('#') {
            continue;
        } else {
            break;
        }
    }
    let mut out = String::new();
    for (i, (line, end)) in lines.iter().enumerate() {
        out.push_str(line);
        if i == last {
            let newline = if end.is_empty() {
                if lines.iter().any(|(_, e)| *e == "\r\n") {
                    "\r\n"
                } else {
                    "\n"
                }
            } else {
                end
            };
            out.push_str(newline);
            out.push_str(&" ".repeat(item_indent));
            out.push_str("- ");
            out.push_str(HOOK);
            if !end.is_empty() {
                out.push_str(end);
            }
        } else {
            out.push_str(end);
        }
    }
    Ok(out)
}

fn is_item(line: &str) -> bool {
    let rest = line.trim_start_matches(' ');
    rest == "-" || rest.starts_with("- ")
}

/// `runcmd: [a, b]`, on one line or several: the hook goes before the closing bracket.
fn add_to_flow(text: &str, lines: &[(&str, &str)], at: usize) -> Result<String, String> {
    let line_start: usize = lines[..at].iter().map(|(l, e)| l.len() + e.len()).sum();
    let open = line_start
        + lines[at]
            .0
            .find('[')
            .ok_or_else(|| "has a runcmd list that could not be read".to_string())?;
    // Scan to the matching `]`, past quoted text and comments; remember the last character
    // that is part of the list (not a space or a comment).
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    let mut last_significant = open;
    let mut close = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' if i > 0 && matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
        if !matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r') | None) {
            last_significant = i;
        }
        i += 1;
    }
    let close = close.ok_or_else(|| "has a runcmd list that is never closed (`]`)".to_string())?;
    let after = text[close + 1..]
        .split('\n')
        .next()
        .unwrap_or_default()
        .trim();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!(
            "has text after runcmd's list (`{after}`): put it on a line of its own"
        ));
    }
    let insert = match bytes[last_significant] {
        b'[' => HOOK.to_string(),
        b',' => format!(" {HOOK}"),
        _ => format!(", {HOOK}"),
    };
    let at = last_significant + 1;
    Ok(format!("{}{insert}{}", &text[..at], &text[at..]))
}

/// The edit, checked by a YAML parser: one document, a mapping whose `runcmd` holds the
/// original items and then the hook, and every other key as it was.
fn check_runcmd_edit(before: &str, after: &str) -> Result<(), String> {
    let root = |text: &str| -> Result<Vec<(Node, Node)>, String> {
        let mut documents =
            parse_documents(text).map_err(|e| format!("line {}: {}", e.pos.line, e.message))?;
        match (documents.pop(), documents.is_empty()) {
            (None, _) => Ok(Vec::new()),
            (
                Some(Node {
                    value: Value::Map(entries),
                    ..
                }),
                true,
            ) => Ok(entries),
            (Some(_), true) => Err("its top level is not a mapping".into()),
            (Some(_), false) => Err("it holds several YAML documents".into()),
        }
    };
    let runcmd = |entries: &[(Node, Node)]| -> Result<Vec<Node>, String> {
        let found: Vec<&Node> = entries
            .iter()
            .filter(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == "runcmd"))
            .map(|(_, v)| v)
            .collect();
        match found.as_slice() {
            [] => Ok(Vec::new()),
            [node] if node.is_null() => Ok(Vec::new()),
            [Node {
                value: Value::Seq(items),
                ..
            }] => Ok(items.clone()),
            [_] => Err("runcmd is not a list".into()),
            _ => Err("runcmd is there twice".into()),
        }
    };
    let old = root(before)?;
    let new = root(after)?;
    let mut expected = runcmd(&old)?;
    let hook = parse_documents(&format!("- {HOOK}\n"))
        .ok()
        .and_then(|mut d| d.pop())
        .and_then(|n| match n.value {
            Value::Seq(mut items) => items.pop(),
            _ => None,
        })
        .ok_or("the hook does not parse")?;
    expected.push(hook);
    if !same_list(&runcmd(&new)?, &expected) {
        return Err("runcmd would not be the file's commands and then the hook".into());
    }
    let others = |entries: &[(Node, Node)]| -> Vec<(Node, Node)> {
        entries
            .iter()
            .filter(|(k, _)| !matches!(&k.value, Value::Scalar { text, .. } if text == "runcmd"))
            .cloned()
            .collect()
    };
    let (old, new) = (others(&old), others(&new));
    if old.len() != new.len()
        || old
            .iter()
            .zip(&new)
            .any(|((k1, v1), (k2, v2))| !same(k1, k2) || !same(v1, v2))
    {
        return Err("another key would change".into());
    }
    Ok(())
}

fn same_list(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// Two YAML nodes hold the same values (wherever they are in the file).
fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (
            Value::Scalar {
                text: t1,
                plain: p1,
            },
            Value::Scalar {
                text: t2,
                plain: p2,
            },
        ) => t1 == t2 && p1 == p2,
        (Value::Seq(x), Value::Seq(y)) => same_list(x, y),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runcmd items a YAML parser sees in `text`, each as written in flow style.
    fn runcmd_items(text: &str) -> Vec<String> {
        fn render(node: &Node) -> String {
            match &node.value {
                Value::Scalar { text, .. } => text.clone(),
                Value::Seq(items) => format!(
                    "[{}]",
                    items.iter().map(render).collect::<Vec<_>>().join(", ")
                ),
                Value::Map(entries) => format!(
                    "{{{}}}",
                    entries
                        .iter()
                        .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        let documents = parse_documents(text).expect("user-data parses");
        let Some(Node {
            value: Value::Map(entries),
            ..
        }) = documents.first()
        else {
            panic!("not a mapping: {text}")
        };
        entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == "runcmd"))
            .map(|(_, v)| match &v.value {
                Value::Seq(items) => items.iter().map(render).collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default()
    }

    const HOOK_ITEM: &str = "[sh, -c, for d in /boot/firmware /boot; do if [ -f \"$d/shoal-firstboot.sh\" ]; then exec sh \"$d/shoal-firstboot.sh\"; fi; done]";

    /// A user-data edit: the exact text, parsed items = the file's + the hook, and flashing
    /// again changes nothing.
    fn check(before: &str, expected: &str, items: &[&str]) {
        let after = user_data(before).unwrap_or_else(|e| panic!("{before:?}: {e}"));
        assert_eq!(after, expected, "from {before:?}");
        let mut wanted: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        wanted.push(HOOK_ITEM.to_string());
        assert_eq!(runcmd_items(&after), wanted, "{after}");
        assert_eq!(user_data(&after).as_deref(), Ok(after.as_str()), "twice");
    }

    #[test]
    fn user_data_without_runcmd_gets_one_at_the_end() {
        let text = "#cloud-config\nhostname: pi\n";
        check(
            text,
            &format!("{text}# Added by `shoal flash`: installs and enrolls the Shoal agent.\nruncmd:\n  - {HOOK}\n"),
            &[],
        );
        check(
            "#cloud-config\nhostname: pi",
            &format!("#cloud-config\nhostname: pi\n# Added by `shoal flash`: installs and enrolls the Shoal agent.\nruncmd:\n  - {HOOK}\n"),
            &[],
        );
    }

    #[test]
    fn a_block_runcmd_gets_the_hook_as_its_last_item_at_its_indentation() {
        let text = "#cloud-config\nruncmd:\n  - ls\n  - [echo, hi]\nhostname: pi\n";
        check(
            text,
            &format!("#cloud-config\nruncmd:\n  - ls\n  - [echo, hi]\n  - {HOOK}\nhostname: pi\n"),
            &["ls", "[echo, hi]"],
        );
        // Items at the key's own indentation, and four spaces deep.
        check(
            "#cloud-config\nruncmd:\n- ls\nusers: []\n",
            &format!("#cloud-config\nruncmd:\n- ls\n- {HOOK}\nusers: []\n"),
            &["ls"],
        );
        check(
            "#cloud-config\nruncmd:   # first boot\n    - ls\n",
            &format!("#cloud-config\nruncmd:   # first boot\n    - ls\n    - {HOOK}\n"),
            &["ls"],
        );
        // Multi-line items (a block scalar with a `#` line of its own), comments and blank
        // lines in the list, and a comment before the next key that stays where it is.
        let text = "#cloud-config\nruncmd:\n  # set up\n  - |\n    echo one\n    # not a comment\n\n  - - echo\n    - two\n# users next\nusers: []\n";
        check(
            text,
            &format!("#cloud-config\nruncmd:\n  # set up\n  - |\n    echo one\n    # not a comment\n\n  - - echo\n    - two\n  - {HOOK}\n# users next\nusers: []\n"),
            &["echo one\n# not a comment\n", "[echo, two]"],
        );
        // CRLF line ends, and a last line without one.
        check(
            "#cloud-config\r\nruncmd:\r\n  - ls\r\n",
            &format!("#cloud-config\r\nruncmd:\r\n  - ls\r\n  - {HOOK}\r\n"),
            &["ls"],
        );
        check(
            "#cloud-config\nruncmd:\n  - ls",
            &format!("#cloud-config\nruncmd:\n  - ls\n  - {HOOK}"),
            &["ls"],
        );
        // An empty runcmd.
        check(
            "#cloud-config\nruncmd:\nhostname: pi\n",
            &format!("#cloud-config\nruncmd:\n  - {HOOK}\nhostname: pi\n"),
            &[],
        );
    }

    #[test]
    fn a_flow_runcmd_gets_the_hook_before_its_closing_bracket() {
        check(
            "#cloud-config\nruncmd: [ls, [echo, 'a ]'' b']]  # two\nhostname: pi\n",
            &format!(
                "#cloud-config\nruncmd: [ls, [echo, 'a ]'' b'], {HOOK}]  # two\nhostname: pi\n"
            ),
            &["ls", "[echo, a ]' b]"],
        );
        check(
            "#cloud-config\nruncmd: []\n",
            &format!("#cloud-config\nruncmd: [{HOOK}]\n"),
            &[],
        );
        check(
            "#cloud-config\nruncmd: [\n  ls,  # list\n  \"echo ]\",\n]\n",
            &format!("#cloud-config\nruncmd: [\n  ls,  # list\n  \"echo ]\", {HOOK}\n]\n"),
            &["ls", "echo ]"],
        );
    }

    #[test]
    fn user_data_that_cannot_be_edited_safely_is_refused_with_why_and_what_to_do() {
        for (text, why) in [
            ("#!/bin/sh\necho hi\n", "is not a #cloud-config file"),
            (
                "#cloud-config\nruncmd: &cmds\n  - ls\nbootcmd: *cmds\n",
                "gives runcmd an anchor",
            ),
            (
                "#cloud-config\nbootcmd: &cmds\n  - ls\nruncmd: *cmds\n",
                "makes runcmd an alias",
            ),
            (
                "#cloud-config\nruncmd:\n  - ls\n---\nruncmd:\n  - pwd\n",
                "several YAML documents",
            ),
            (
                "#cloud-config\nruncmd:\n  - ls\nruncmd:\n  - pwd\n",
                "has runcmd twice",
            ),
            ("#cloud-config\nruncmd: ls\n", "is not a list"),
            ("#cloud-config\nruncmd: !!seq\n  - ls\n", "a tag"),
            ("#cloud-config\nruncmd: [ls\n", "never closed"),
            ("#cloud-config\n{runcmd: [ls]}\n", "one flow mapping"),
            ("#cloud-config\nruncmd:\n  ls: x\n", "is not a `- ` item"),
            // The parser's check: a quoted scalar broken in a way the line edit cannot see.
            (
                "#cloud-config\nruncmd:\n  - 'ls\n",
                "could not be edited safely",
            ),
        ] {
            let error = user_data(text).expect_err(text);
            assert!(error.contains(why), "{text:?}: {error}");
            assert!(error.contains(HOOK), "says what to add by hand: {error}");
        }
    }
}
