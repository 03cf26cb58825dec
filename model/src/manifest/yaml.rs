//! A YAML document tree that remembers where each node starts, built from `saphyr-parser`
//! events, so that every decoding error can name its line and column.
//!
//! Hostile input is bounded: nesting depth, the node count and the bytes of text (aliases
//! included, so neither a "billion laughs" document nor a few aliases of one huge value can
//! expand) are capped before anything is copied, and building never panics.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; manifests need about eight levels.
pub const MAX_DEPTH: usize = 64;
/// Most nodes accepted in one file, counting each alias expansion.
pub const MAX_NODES: usize = 100_000;
/// Most bytes of scalar text accepted in one file, counting each alias expansion: four times
/// the largest manifest file, so aliases cannot make a small file cost gigabytes.
pub const MAX_TEXT_BYTES: usize = 4 * (super::MAX_FILE_BYTES as usize);

/// A position in the source: line and column, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    /// A scalar's text; `plain` when it was written without quotes or block style, which is
    /// when `true`, `42` or `null` mean a boolean, a number or nothing.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in source order; duplicate keys are kept so the decoder can report them.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this node is YAML's null (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of node this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing",
            Value::Scalar { .. } => "a single value",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A syntax error, or a document over the size limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

enum Open {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Parses every document in `text`; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut documents = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut bytes = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let pos = Pos::of(span);
        let finished = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                nodes += 1;
                bytes = bytes.saturating_add(text.len());
                let node = Node {
                    pos,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                remember(&mut anchors, anchor, &node);
                Some(node)
            }
            Event::Alias(id) => {
                let anchored = anchors.get(&id).ok_or_else(|| SyntaxError {
                    pos,
                    message: "this alias refers to an anchor that is not defined before it".into(),
                })?;
                // Counted before the copy is made: the copy is what the limits prevent.
                let (more_nodes, more_bytes) = cost(anchored);
                nodes = nodes.saturating_add(more_nodes);
                bytes = bytes.saturating_add(more_bytes);
                check_size(nodes, bytes, pos)?;
                Some(Node {
                    pos,
                    ..anchored.clone()
                })
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos,
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Open::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq { pos, anchor, items }) => {
                    let node = Node {
                        pos,
                        value: Value::Seq(items),
                    };
                    remember(&mut anchors, anchor, &node);
                    Some(node)
                }
                Some(Open::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => {
                    let node = Node {
                        pos,
                        value: Value::Map(entries),
                    };
                    remember(&mut anchors, anchor, &node);
                    Some(node)
                }
                None => None,
            },
            Event::DocumentEnd => {
                anchors.clear();
                None
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::Nothing => {
                None
            }
        };
        check_size(nodes, bytes, pos)?;
        if let Some(node) = finished {
            match stack.last_mut() {
                None => {
                    if !node.is_null() {
                        documents.push(node);
                    }
                }
                Some(Open::Seq { items, .. }) => items.push(node),
                Some(Open::Map { entries, key, .. }) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                },
            }
        }
    }
    Ok(documents)
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: &Node) {
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
}

fn check_size(nodes: usize, bytes: usize, pos: Pos) -> Result<(), SyntaxError> {
    if nodes > MAX_NODES {
        return Err(SyntaxError {
            pos,
            message: format!("the file holds more than {MAX_NODES} values"),
        });
    }
    if bytes > MAX_TEXT_BYTES {
        return Err(SyntaxError {
            pos,
            message: format!(
                "the file's values, with aliases expanded, are longer than {MAX_TEXT_BYTES} bytes"
            ),
        });
    }
    Ok(())
}

/// The nodes and scalar bytes a copy of `node` adds.
fn cost(node: &Node) -> (usize, usize) {
    let mut total: (usize, usize) = (1, 0);
    let mut add = |(n, b): (usize, usize)| {
        total.0 = total.0.saturating_add(n);
        total.1 = total.1.saturating_add(b);
    };
    match &node.value {
        Value::Scalar { text, .. } => add((0, text.len())),
        Value::Seq(items) => items.iter().for_each(|i| add(cost(i))),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            add(cost(k));
            add(cost(v));
        }),
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_remember_their_line_and_column() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - 'y'\n").expect("valid");
        assert_eq!(docs.len(), 1);
        let Value::Map(entries) = &docs[0].value else {
            panic!("expected a map")
        };
        assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("expected a seq")
        };
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
        assert!(matches!(
            &items[1].value,
            Value::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn several_documents_are_parsed_and_empty_ones_skipped() {
        let docs = parse_documents("---\na: 1\n---\n---\nb: 2\n...\n").expect("valid");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].pos.line, 5);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn aliases_expand_but_an_alias_bomb_is_refused() {
        let docs = parse_documents("a: &x [1, 2]\nb: *x\n").expect("valid");
        let Value::Map(entries) = &docs[0].value else {
            panic!("expected a map")
        };
        assert!(matches!(&entries[1].1.value, Value::Seq(items) if items.len() == 2));

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse_documents(&bomb).expect_err("bomb");
        assert!(err.message.contains("more than"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // Flow nesting trips the scanner's own limit; block nesting trips ours.
        assert!(parse_documents(&"[".repeat(100_000)).is_err());
        let block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        let err =
            parse_documents(&format!("{block}{}end: 1\n", "  ".repeat(100))).expect_err("too deep");
        assert!(err.message.contains("nesting"), "{err:?}");
    }
}
