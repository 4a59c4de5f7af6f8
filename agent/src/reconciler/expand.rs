//! Kubernetes' `$(VAR)` references in `env[].value`, `command` and `args`: `$(NAME)` becomes the
//! value of a variable defined before it (unknown names stay as written), `$$` is a literal
//! `$`, and any other `$` is kept.

use std::collections::BTreeMap;

/// `input` with its references to `vars` replaced.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            // A `$` at the very end stays.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // No closing parenthesis: kept as written.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let vars: BTreeMap<String, String> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("EMPTY", ""),
            ("NESTED", "$(VAR_A)"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rows = [
            ("", ""),
            ("plain", "plain"),
            ("$(VAR_A)", "A"),
            ("x-$(VAR_A)-$(VAR_B)-y", "x-A-B-y"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_A", "$(VAR_A"),
            ("$()", "$()"),
            ("$(NESTED)", "$(VAR_A)"),
            ("é$(VAR_A)ü$ö", "éAü$ö"),
        ];
        for (input, want) in rows {
            assert_eq!(expand(input, &vars), want, "{input:?}");
        }
    }
}
