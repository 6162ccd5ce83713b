//! Reading a child's log file (tracing's plain format): its WARN and ERROR lines counted by
//! message for the report, and its last lines for an error when the child dies.

use std::{collections::HashMap, path::Path};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LogProblem {
    pub level: String,
    /// The start of the message (target and text, without its fields).
    pub message: String,
    pub count: u64,
}

/// Counts the WARN and ERROR lines of a gateway log (tracing's plain format) by message.
pub(crate) fn log_problems(path: &Path) -> Vec<LogProblem> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    for line in text.lines() {
        // `<time> <LEVEL> <target>: <text> <key=value>...`
        let Some((_time, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Some((level, message)) = rest.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        // Fields follow the text as key=value; the text alone names the problem.
        let message = message.trim_start();
        let cut = message
            .find('=')
            .and_then(|eq| message[..eq].rfind(' '))
            .unwrap_or(message.len());
        let key: String = message[..cut].chars().take(120).collect();
        *counts.entry((level.to_string(), key)).or_default() += 1;
    }
    let mut problems: Vec<LogProblem> = counts
        .into_iter()
        .map(|((level, message), count)| LogProblem { level, message, count })
        .collect();
    problems.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.message.cmp(&b.message)));
    problems
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_problems_are_counted_by_message() {
        let dir = std::env::temp_dir().join(format!("gatehouse-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("gw.log");
        std::fs::write(
            &log,
            "2026-11-26T18:34:31.774668Z  INFO gatehouse_gateway::gateway: gateway started gateway=gw-1\n\
             2026-11-26T18:34:35.513002Z  WARN sqlx::query: slow statement: execution time exceeded alert threshold summary=\"DELETE\" elapsed=2.3s\n\
             2026-11-26T18:34:39.724476Z  WARN sqlx::query: slow statement: execution time exceeded alert threshold summary=\"DELETE\" elapsed=3.2s\n\
             2026-11-26T18:34:40.000000Z ERROR gatehouse_gateway::uplink: hub link down hub=x\n",
        )
        .unwrap();
        let p = log_problems(&log);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].level.as_str(), p[0].message.as_str(), p[0].count),
            (
                "WARN",
                "sqlx::query: slow statement: execution time exceeded alert threshold",
                2
            )
        );
        assert_eq!(
            (p[1].level.as_str(), p[1].message.as_str()),
            ("ERROR", "gatehouse_gateway::uplink: hub link down")
        );
    }
}
