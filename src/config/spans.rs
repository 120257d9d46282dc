//! Where each key and value of a YAML file stands, so that errors found after
//! parsing (types, references, rules) can still name `file:line:col`.
//!
//! serde_yaml forgets positions once a document is a `Value`; this index is
//! built from yaml-rust2's event stream and keyed by the same key paths the
//! errors use (`routes[2].upstream`, `upstreams.api.backends[0]`).

use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// Positions of keys and values by key path, and keys that appear twice.
#[derive(Debug, Default)]
pub struct SpanIndex {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
    /// Mapping keys written more than once: (path, position of the repeat).
    pub duplicates: Vec<(String, Pos)>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashSet<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Joins a parent path and a mapping key.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl SpanIndex {
    /// Indexes `text`. A syntax error yields an index of what came before it;
    /// serde_yaml reports the syntax error itself.
    pub fn build(text: &str) -> SpanIndex {
        let mut index = SpanIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Ok((event, mark)) = parser.next_token() {
            let pos = Pos {
                line: mark.line(),
                col: mark.col() + 1,
            };
            match event {
                Event::StreamEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key, seen }) = stack.last_mut() {
                        if key.is_none() {
                            // yaml-rust2 marks a block mapping's start at its
                            // first ':'; the mapping really starts at its first key.
                            if seen.is_empty() {
                                if let Some(start) = index.values.get_mut(path.as_str()) {
                                    if (pos.line, pos.col) < (start.line, start.col) {
                                        *start = pos;
                                    }
                                }
                            }
                            let full = join_key(path, &value);
                            if !seen.insert(value.clone()) {
                                index.duplicates.push((full.clone(), pos));
                            }
                            index.keys.entry(full).or_insert(pos);
                            *key = Some(value);
                            continue;
                        }
                    }
                    if let Some(path) = Self::value_path(&mut stack) {
                        index.values.entry(path).or_insert(pos);
                    }
                }
                Event::Alias(_) => {
                    if let Some(path) = Self::value_path(&mut stack) {
                        index.values.entry(path).or_insert(pos);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = Self::value_path(&mut stack).unwrap_or_default();
                    index.values.entry(path.clone()).or_insert(pos);
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            path,
                            key: None,
                            seen: HashSet::new(),
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// The path of the value that starts now, consuming the pending key or index.
    fn value_path(stack: &mut [Frame]) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| join_key(path, &k)),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }

    /// Best position for an error about `path`: its value, else its key, else
    /// the nearest ancestor that is known.
    pub fn locate(&self, path: &str) -> Pos {
        self.locate_value(path)
    }

    /// Like [`Self::locate`] but prefers the key (for "unknown key" errors).
    pub fn locate_key(&self, path: &str) -> Pos {
        if let Some(p) = self.keys.get(path) {
            return *p;
        }
        self.locate_value(path)
    }

    fn locate_value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p).or_else(|| self.keys.get(p)) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .values
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, col: 1 })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_values_and_items() {
        let text = "a:\n  b: 1\nlist:\n  - x: 2\n  - y\n";
        let idx = SpanIndex::build(text);
        assert_eq!(idx.locate_key("a.b"), Pos { line: 2, col: 3 });
        assert_eq!(idx.locate("a.b"), Pos { line: 2, col: 6 });
        assert_eq!(idx.locate("list[0].x"), Pos { line: 4, col: 8 });
        assert_eq!(idx.locate("list[1]"), Pos { line: 5, col: 5 });
        assert_eq!(idx.locate("list[1].missing"), Pos { line: 5, col: 5 });
    }

    #[test]
    fn duplicate_keys_are_found() {
        let idx = SpanIndex::build("u:\n  a: 1\n  a: 2\n");
        assert_eq!(
            idx.duplicates,
            vec![("u.a".to_string(), Pos { line: 3, col: 3 })]
        );
    }
}
