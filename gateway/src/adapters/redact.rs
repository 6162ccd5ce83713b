//! Pure: a message about a device's payload made fit for a log line. A rejection's detail
//! quotes what it could not take (`serde_json`'s ``invalid type: integer `12345678` ``, a
//! vendor mapping's `value "B3-1201"`), and that may be a resident's card number, plate or
//! flat (docs/design.md "Personal data"): every quoted or backticked part is blanked.

/// `detail` with the contents of every `"…"` and `` `…` `` replaced by `…`.
pub fn quoted_values(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut open: Option<char> = None;
    let mut escaped = false;
    for c in detail.chars() {
        match open {
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    out.push('…');
                    out.push(c);
                    open = None;
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quoted_values;

    #[test]
    fn quoted_parts_are_blanked() {
        assert_eq!(
            quoted_values("type \"access\": invalid type: integer `12345678`, expected a string"),
            "type \"…\": invalid type: integer `…`, expected a string"
        );
        assert_eq!(quoted_values(r#"value "B3-\"12" at x"#), "value \"…\" at x");
        assert_eq!(quoted_values("unterminated \"沪A12345"), "unterminated \"…");
        assert_eq!(quoted_values("missing field"), "missing field");
    }
}
