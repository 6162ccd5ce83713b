//! A rota as CSV: `date,estate,post,shift,guard`, one assignment a line, `date` the local
//! date the shift starts on (YYYY-MM-DD). A header line is written and accepted; fields
//! holding a comma or a quote are quoted with `"` (doubled inside). Pure.

use chrono::NaiveDate;

/// One line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub date: NaiveDate,
    pub estate: String,
    pub post: String,
    pub shift: String,
    pub guard: String,
}

pub const HEADER: &str = "date,estate,post,shift,guard";

fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out.into_iter().map(|s| s.trim().to_owned()).collect())
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Parses a rota; errors name the line.
pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let f = split(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if i == 0 && f.first().is_some_and(|x| x == "date") {
            continue;
        }
        let [date, estate, post, shift, guard] = f.as_slice() else {
            return Err(format!(
                "line {}: expected 5 fields ({HEADER}), found {}",
                i + 1,
                f.len()
            ));
        };
        let date =
            NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| format!("line {}: date {date:?}: {e}", i + 1))?;
        for (name, v) in [("estate", estate), ("post", post), ("shift", shift), ("guard", guard)] {
            if v.is_empty() {
                return Err(format!("line {}: empty {name}", i + 1));
            }
        }
        rows.push(Row {
            date,
            estate: estate.clone(),
            post: post.clone(),
            shift: shift.clone(),
            guard: guard.clone(),
        });
    }
    Ok(rows)
}

/// Writes a rota (with the header).
pub fn format(rows: &[Row]) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            r.date,
            field(&r.estate),
            field(&r.post),
            field(&r.shift),
            field(&r.guard)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_header_comments_and_quotes() {
        let rows =
            parse("date,estate,post,shift,guard\n# week 48\n2026-11-23,riverside,rg-gate,night,\"g,1\"\n").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].guard, "g,1");
        assert!(
            parse("2026-11-23,riverside,rg-gate,night")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse("2026-13-01,a,b,c,d").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(fields in proptest::collection::vec("[a-z0-9,\" -]{1,8}", 4), day in 0u32..300) {
            let fields: Vec<String> = fields.into_iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
            prop_assume!(fields.len() == 4);
            let row = Row {
                date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(u64::from(day)),
                estate: fields[0].clone(), post: fields[1].clone(), shift: fields[2].clone(), guard: fields[3].clone(),
            };
            prop_assert_eq!(parse(&format(std::slice::from_ref(&row))).unwrap(), vec![row]);
        }
    }
}
