//! Splits the bytes of a manifest file into documents and parses each into a generic JSON tree.
//! The only file that touches the YAML crate (`serde_yaml_ng`).
//!
//! YAML files are cut at `---` lines before parsing, so a syntax error in one document does not
//! hide the others; each document is parsed with blank lines in front of it so that the line
//! numbers in parser messages are those of the whole file. Input whose first character is `{`
//! or `[` is read as JSON (one or more concatenated values).

use serde::Serialize;
use serde_json::Value;

/// Writing a value as YAML failed (only possible for values with non-string map keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct YamlError(String);

/// Writes any serializable value as YAML (for `-o yaml`), with the same YAML library the parser
/// uses, so the choice of library stays in this file.
pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, YamlError> {
    serde_yaml_ng::to_string(value).map_err(|error| YamlError(error.to_string()))
}

/// One non-empty document of a file, before validation.
#[derive(Debug)]
pub(crate) struct SourceDocument {
    /// 1-based line where the document starts in the file.
    pub(crate) start_line: usize,
    /// The parsed tree, or a syntax error message (with line and column when known).
    pub(crate) content: Result<Value, String>,
}

/// Parses every non-empty document of a file. Empty documents (only comments, blank lines or
/// an explicit null) are skipped.
pub(crate) fn split_documents(bytes: &[u8]) -> Vec<SourceDocument> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            return vec![SourceDocument {
                start_line: 1,
                content: Err(format!(
                    "file is not valid UTF-8 (bad byte at offset {}); save it as UTF-8",
                    error.valid_up_to()
                )),
            }];
        }
    };
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{' | '[')) {
        split_json(text)
    } else {
        split_yaml(text)
    }
}

fn split_json(text: &str) -> Vec<SourceDocument> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let offset = stream.byte_offset();
        let rest = &text[offset..];
        let skipped = rest.len() - rest.trim_start().len();
        let start_line = line_of(text, offset + skipped);
        match stream.next() {
            None => break,
            Some(Ok(Value::Null)) => continue,
            Some(Ok(value)) => documents.push(SourceDocument {
                start_line,
                content: Ok(value),
            }),
            Some(Err(error)) => {
                documents.push(SourceDocument {
                    start_line,
                    content: Err(format!("invalid JSON: {error}")),
                });
                break;
            }
        }
    }
    documents
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A line that starts a new YAML document: `---` alone or followed by whitespace.
fn is_document_start(line: &str) -> bool {
    match line.strip_prefix("---") {
        Some(rest) => rest.is_empty() || rest.starts_with([' ', '\t', '\r']),
        None => false,
    }
}

/// A line that ends a YAML document: `...` alone or followed by whitespace.
fn is_document_end(line: &str) -> bool {
    match line.strip_prefix("...") {
        Some(rest) => rest.trim().is_empty() || rest.trim_start().starts_with('#'),
        None => false,
    }
}

/// True when a chunk has nothing but blank lines, comments, directives and markers.
fn is_blank_chunk(lines: &[&str]) -> bool {
    lines.iter().all(|line| {
        let trimmed = line.trim();
        trimmed.is_empty()
            || trimmed.starts_with('#')
            || line.starts_with('%')
            || trimmed == "---"
            || is_document_end(line)
    })
}

fn split_yaml(text: &str) -> Vec<SourceDocument> {
    let lines: Vec<&str> = text.split('\n').collect();
    // (first line index, lines) of every chunk.
    let mut chunks: Vec<(usize, Vec<&str>)> = vec![(0, Vec::new())];
    for (number, line) in lines.iter().enumerate() {
        if is_document_start(line) {
            chunks.push((number, Vec::new()));
        }
        let ended = is_document_end(line);
        if let Some((_, current)) = chunks.last_mut() {
            current.push(line);
        }
        if ended {
            chunks.push((number + 1, Vec::new()));
        }
    }
    let mut documents = Vec::new();
    for (first_line, chunk) in chunks {
        if is_blank_chunk(&chunk) {
            continue;
        }
        // Directives (`%YAML 1.2`) only make sense before the first document; drop them.
        let body: Vec<&str> = chunk
            .iter()
            .map(|line| if line.starts_with('%') { "" } else { *line })
            .collect();
        let padded = format!("{}{}", "\n".repeat(first_line), body.join("\n"));
        let content = match serde_yaml_ng::from_str::<Value>(&padded) {
            Ok(Value::Null) => continue,
            Ok(value) => Ok(value),
            Err(error) => Err(format!("invalid YAML: {error}")),
        };
        let skipped = chunk
            .iter()
            .take_while(|line| line.trim().is_empty() || line.trim().starts_with('#'))
            .count();
        documents.push(SourceDocument {
            start_line: first_line + skipped + 1,
            content,
        });
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(text: &str) -> Vec<Result<Value, String>> {
        split_documents(text.as_bytes())
            .into_iter()
            .map(|d| d.content)
            .collect()
    }

    #[test]
    fn yaml_documents_are_split_and_empty_ones_skipped() {
        let text = "# leading comment\n---\na: 1\n---\n# only a comment\n---\n\n---\nb: [1, 2]\n...\n---\n~\n";
        let docs = split_documents(text.as_bytes());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].content, Ok(serde_json::json!({"a": 1})));
        assert_eq!(docs[0].start_line, 2);
        assert_eq!(docs[1].content, Ok(serde_json::json!({"b": [1, 2]})));
    }

    #[test]
    fn a_syntax_error_stays_in_its_document_with_file_line_numbers() {
        let text = "a: 1\n---\nb: [1, 2\nc: 3\n---\nd: 4\n";
        let docs = contents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0], Ok(serde_json::json!({"a": 1})));
        let error = docs[1].clone().err().unwrap_or_default();
        assert!(error.starts_with("invalid YAML: "), "{error}");
        assert!(
            error.contains("line 4"),
            "line numbers must count from the file start: {error}"
        );
        assert_eq!(docs[2], Ok(serde_json::json!({"d": 4})));
    }

    #[test]
    fn content_on_the_marker_line_and_block_scalars_survive() {
        let text = "--- {a: 1}\n---\nscript: |\n  echo ---\n  echo hi\n";
        let docs = contents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0], Ok(serde_json::json!({"a": 1})));
        assert_eq!(
            docs[1],
            Ok(serde_json::json!({"script": "echo ---\necho hi\n"}))
        );
    }

    #[test]
    fn json_streams_and_json_errors() {
        let docs = contents("{\"a\": 1}\n{\"b\": 2}");
        assert_eq!(
            docs,
            vec![
                Ok(serde_json::json!({"a": 1})),
                Ok(serde_json::json!({"b": 2}))
            ]
        );
        let broken = contents("{\"a\": 1}\n{\"b\": }");
        assert_eq!(broken.len(), 2);
        let error = broken[1].clone().err().unwrap_or_default();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn bad_utf8_and_bom() {
        let docs = contents("\u{feff}a: 1\n");
        assert_eq!(docs, vec![Ok(serde_json::json!({"a": 1}))]);
        let bad = split_documents(b"a: \xff\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].content.is_err());
    }

    #[test]
    fn yaml_scalars_keep_their_types() {
        let docs = contents("a: 0644\nb: 0o644\nc: 129e6\nd: yes\ne: 1.5\nf: \"1\"\n");
        let Ok(value) = &docs[0] else {
            panic!("parse failed: {:?}", docs[0]);
        };
        assert_eq!(value["d"], serde_json::json!("yes"));
        assert_eq!(value["f"], serde_json::json!("1"));
        assert_eq!(value["e"], serde_json::json!(1.5));
        assert_eq!(value["b"], serde_json::json!(420));
    }
}
