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

/// An e-mail address in a log line or a stored reason: the first character of the local part
/// and the domain ("zhang.wei@example.com" → "z***@example.com"), enough to tell which
/// mailbox a failure is about without holding the address.
pub fn email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => redacted(value),
    }
}

/// A phone number in a log line or a stored reason: its last 4 digits only
/// ("+8613812345678" → "**********5678"); shorter numbers are hidden whole.
pub fn phone(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - 4;
    let mut out = "*".repeat(hidden);
    out.extend(&chars[hidden..]);
    out
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

    #[test]
    fn e_mail_addresses_and_phone_numbers() {
        assert_eq!(email("zhang.wei@example.com"), "z***@example.com");
        assert_eq!(email("张伟@例子.cn"), "张***@例子.cn");
        assert_eq!(email("nobody"), "<redacted, 6 chars>");
        assert_eq!(phone("+8613812345678"), "**********5678");
        assert_eq!(phone("1234567"), "*******");
    }
}
