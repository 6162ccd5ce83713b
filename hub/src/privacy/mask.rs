//! Pure string masks for residents' personal data: what a role that may not see a value in
//! clear sees instead, and what a log line may say about it (nothing).

/// A card number or a plate: all but the last characters hidden, so an operator can still
/// tell two badges apart on a call ("the card ending 5678") without holding the number.
/// Long values keep 4, shorter ones 3, very short ones nothing.
pub fn tail(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = match chars.len() {
        0 => return String::new(),
        n if n >= 8 => 4,
        n if n >= 5 => 3,
        _ => 0,
    };
    let hidden = chars.len() - keep;
    let mut out = "*".repeat(hidden);
    out.extend(&chars[hidden..]);
    out
}

/// A flat: nothing of it is shown (its block alone narrows a resident down too far).
pub fn flat(value: &str) -> String {
    if value.is_empty() { String::new() } else { "***".into() }
}

/// A person's name: initials ("Zhang Wei" → "Z. W.", "张伟" → "张.").
pub fn initials(value: &str) -> String {
    value
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{c}."))
        .collect::<Vec<_>>()
        .join(" ")
}

/// For a log line: the value's length only, never any of its characters.
pub fn redacted(value: &str) -> String {
    format!("<redacted, {} chars>", value.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_four_three_or_none() {
        assert_eq!(tail("12345678"), "****5678");
        assert_eq!(tail("沪A12345"), "****345");
        assert_eq!(tail("1234"), "****");
        assert_eq!(tail(""), "");
    }

    #[test]
    fn flats_and_names_and_logs() {
        assert_eq!(flat("B3-1201"), "***");
        assert_eq!(flat(""), "");
        assert_eq!(initials("Zhang  Wei"), "Z. W.");
        assert_eq!(initials("张伟"), "张.");
        assert_eq!(redacted("B3-1201"), "<redacted, 7 chars>");
    }
}
