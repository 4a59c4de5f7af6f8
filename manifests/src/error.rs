//! Problems found in manifests (errors and warnings), the field paths that locate them, and the
//! per-document collector that validation writes into.

use std::fmt;

/// A problem that makes one document of a manifest file unusable.
///
/// Displays as `manifest web.yaml: document 2: spec.replicas: must be >= 0 (got -1)`.
/// Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file name the caller passed to [`crate::parse_file`].
    pub file: String,
    /// 1-based index of the document among the file's non-empty documents.
    pub document: usize,
    /// Field path such as `spec.template.spec.containers[0].image`; empty for whole-document problems.
    pub field: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

/// Something in a document that was accepted but ignored (for example an unknown field).
///
/// Displays as `manifest web.yaml: document 1: spec.dnsPolicy: unknown field, ignored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestWarning {
    /// The file name the caller passed to [`crate::parse_file`].
    pub file: String,
    /// 1-based index of the document among the file's non-empty documents.
    pub document: usize,
    /// Field path of the ignored or suspicious field.
    pub field: String,
    /// What was noticed, lowercase, without a trailing period.
    pub message: String,
}

fn write_problem(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    document: usize,
    field: &str,
    message: &str,
) -> fmt::Result {
    write!(f, "manifest {file}: document {document}: ")?;
    if !field.is_empty() {
        write!(f, "{field}: ")?;
    }
    f.write_str(message)
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_problem(f, &self.file, self.document, &self.field, &self.message)
    }
}

impl std::error::Error for ManifestError {}

impl fmt::Display for ManifestWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_problem(f, &self.file, self.document, &self.field, &self.message)
    }
}

/// A field path being built while walking a document: `spec.containers[0].ports[1].hostPort`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub(crate) fn root() -> FieldPath {
        FieldPath(String::new())
    }

    /// A struct field or map key below this path. Keys that are not plain words (such as
    /// `app.kubernetes.io/name`) are written in brackets: `labels["app.kubernetes.io/name"]`.
    pub(crate) fn child(&self, key: &str) -> FieldPath {
        let plain = key.starts_with(|c: char| c.is_ascii_alphanumeric())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            if self.0.is_empty() {
                FieldPath(key.to_string())
            } else {
                FieldPath(format!("{}.{key}", self.0))
            }
        } else {
            FieldPath(format!("{}[{key:?}]", self.0))
        }
    }

    /// A list element below this path.
    pub(crate) fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `other` or lies below it.
    fn is_within(&self, other: &str) -> bool {
        match self.0.strip_prefix(other) {
            Some(rest) => {
                other.is_empty()
                    || rest.is_empty()
                    || rest.starts_with('.')
                    || rest.starts_with('[')
            }
            None => false,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem before it is tied to a file and document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) field: String,
    pub(crate) message: String,
}

/// Collects every error and warning of one document.
///
/// Fields that already failed to decode (wrong type) are "spoiled": later validation errors at or
/// below them are dropped, so a field with the wrong type is not also reported as missing.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) errors: Vec<Problem>,
    pub(crate) warnings: Vec<Problem>,
    spoiled: Vec<String>,
}

impl Problems {
    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        if self.spoiled.iter().any(|spoiled| path.is_within(spoiled)) {
            return;
        }
        self.errors.push(Problem {
            field: path.as_str().to_string(),
            message: message.into(),
        });
    }

    /// Records a decoding (type) error and spoils its field for later checks.
    pub(crate) fn type_error(&mut self, field: String, message: String) {
        self.spoiled.push(field.clone());
        self.errors.push(Problem { field, message });
    }

    pub(crate) fn warn(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.warnings.push(Problem {
            field: path.as_str().to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn warn_raw(&mut self, field: String, message: impl Into<String>) {
        self.warnings.push(Problem {
            field,
            message: message.into(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(crate) fn into_manifest(
        self,
        file: &str,
        document: usize,
    ) -> (Vec<ManifestError>, Vec<ManifestWarning>) {
        let errors = self
            .errors
            .into_iter()
            .map(|p| ManifestError {
                file: file.to_string(),
                document,
                field: p.field,
                message: p.message,
            })
            .collect();
        let warnings = self
            .warnings
            .into_iter()
            .map(|p| ManifestWarning {
                file: file.to_string(),
                document,
                field: p.field,
                message: p.message,
            })
            .collect();
        (errors, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubectl() {
        let path = FieldPath::root()
            .child("spec")
            .child("containers")
            .index(0)
            .child("resources");
        assert_eq!(path.as_str(), "spec.containers[0].resources");
        let label = FieldPath::root()
            .child("metadata")
            .child("labels")
            .child("app.kubernetes.io/name");
        assert_eq!(
            label.as_str(),
            r#"metadata.labels["app.kubernetes.io/name"]"#
        );
    }

    #[test]
    fn spoiled_fields_hide_follow_up_errors() {
        let mut problems = Problems::default();
        problems.type_error("spec.replicas".into(), "invalid type".into());
        let replicas = FieldPath::root().child("spec").child("replicas");
        problems.error(&replicas, "required");
        problems.error(&FieldPath::root().child("spec").child("replicasX"), "other");
        assert_eq!(problems.errors.len(), 2);
        assert_eq!(problems.errors[1].field, "spec.replicasX");
    }

    #[test]
    fn display_matches_the_documented_shape() {
        let error = ManifestError {
            file: "web.yaml".into(),
            document: 2,
            field: "spec.replicas".into(),
            message: "must be >= 0 (got -1)".into(),
        };
        assert_eq!(
            error.to_string(),
            "manifest web.yaml: document 2: spec.replicas: must be >= 0 (got -1)"
        );
        let whole = ManifestError {
            field: String::new(),
            ..error
        };
        assert_eq!(
            whole.to_string(),
            "manifest web.yaml: document 2: must be >= 0 (got -1)"
        );
    }
}
