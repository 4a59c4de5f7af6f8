//! Turns a generic JSON tree into the lenient `raw` types while collecting every type error
//! (through `serde_path_to_error`) and every unknown field (through `serde_ignored`), each with
//! its field path.
//!
//! serde stops at the first type error, so decoding is repeated: the offending value is taken
//! out of the tree (a map entry is removed, a list element becomes null) and decoding runs again,
//! until it succeeds. Every raw field is optional and list elements are `Option`, so removing a
//! value never creates a new error.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{FieldPath, Problems};

/// Upper bound on decoding passes (one per type error) for one document.
const MAX_PASSES: usize = 64;

/// Whether type-error messages may quote the offending value (not in Secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Values {
    Shown,
    Hidden,
}

/// Decodes `tree` into `T`, writing type errors and unknown-field warnings into `problems`.
/// Returns `None` only when the document as a whole has the wrong shape.
pub(crate) fn decode<T: DeserializeOwned>(
    mut tree: Value,
    values: Values,
    problems: &mut Problems,
) -> Option<T> {
    let mut last_failed: Option<String> = None;
    for _ in 0..MAX_PASSES {
        let mut unknown_fields = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            unknown_fields.push(ignored_path(&path).as_str().to_string());
        };
        let result: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(&tree, &mut on_ignored),
        );
        match result {
            Ok(decoded) => {
                for field in unknown_fields {
                    problems.warn_raw(field, "unknown field, ignored");
                }
                return Some(decoded);
            }
            Err(error) => {
                let segments: Vec<_> = error.path().iter().cloned().collect();
                let message = friendly_message(&error.inner().to_string(), values);
                let field = render_segments(&segments);
                if last_failed.as_ref() == Some(&field) {
                    return None;
                }
                problems.type_error(field.clone(), message);
                if !take_out(&mut tree, &segments) {
                    return None;
                }
                last_failed = Some(field);
            }
        }
    }
    problems.type_error(
        String::new(),
        "too many type errors, stopped looking".to_string(),
    );
    None
}

/// Removes the value at `segments` (map entry removed, list element set to null).
fn take_out(tree: &mut Value, segments: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key),
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
            Some(item) if !item.is_null() => {
                *item = Value::Null;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn render_segments(segments: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut path = FieldPath::root();
    for segment in segments {
        path = match segment {
            Segment::Map { key } => path.child(key),
            Segment::Seq { index } => path.index(*index),
            Segment::Enum { variant } => path.child(variant),
            Segment::Unknown => path.child("?"),
        };
    }
    path.as_str().to_string()
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path;
    match path {
        Path::Root => FieldPath::root(),
        Path::Seq { parent, index } => ignored_path(parent).index(*index),
        Path::Map { parent, key } => ignored_path(parent).child(key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Rewrites serde's wording for manifest authors ("expected i64" -> "expected an integer") and,
/// for Secrets, drops the quoted value.
fn friendly_message(message: &str, values: Values) -> String {
    let mut text = message.to_string();
    for (from, to) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        ("invalid type: sequence", "invalid type: list"),
        ("invalid type: map", "invalid type: mapping"),
    ] {
        text = text.replace(from, to);
    }
    if let Some(start) = text.find("expected struct ") {
        text.replace_range(start.., "expected a mapping");
    }
    match values {
        Values::Shown => text,
        Values::Hidden => match text.split_once(", expected ") {
            Some((_, expected)) => {
                format!("has the wrong type (value not shown), expected {expected}")
            }
            None if text.contains('"') || text.contains('`') => {
                "has the wrong type (value not shown)".to_string()
            }
            None => text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_speak_manifest_and_hide_secret_values() {
        assert_eq!(
            friendly_message("invalid type: string \"two\", expected i64", Values::Shown),
            "invalid type: string \"two\", expected an integer"
        );
        assert_eq!(
            friendly_message(
                "invalid type: sequence, expected struct RawContainer",
                Values::Shown
            ),
            "invalid type: list, expected a mapping"
        );
        assert_eq!(
            friendly_message(
                "invalid type: string \"hunter2\", expected a map",
                Values::Hidden
            ),
            "has the wrong type (value not shown), expected a mapping"
        );
    }
}
