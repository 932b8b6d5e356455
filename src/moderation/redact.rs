//! PII redaction: emails, phone numbers, payment card numbers (Luhn-checked) and US Social
//! Security numbers are replaced with `[EMAIL]`, `[PHONE]`, `[CARD]`, `[SSN]`.
//!
//! Near-misses stay: a 16-digit number that fails the Luhn check, an SSN-shaped number with
//! an area of 000/666/9xx, an order number like `SNP-20230914-001`, a date, a version string.
//! Counts per kind are reported; redacted values never are.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b").expect("valid regex")
});
/// 13-19 digits, optionally grouped by single spaces or dashes.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("valid regex"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{3})-(\d{2})-(\d{4})\b").expect("valid regex"));
/// North American numbers: optional +1, then (206) 555-0100, 206-555-0100, 206.555.0100,
/// 206 555 0100; or an international +CC number of 8-14 digits.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+1[ .-]?)?(?:\(\d{3}\)[ ]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b|\+\d{1,3}[ .-]?\d(?:[ .-]?\d){7,13}\b",
    )
    .expect("valid regex")
});

/// What was redacted, by kind.
pub type Counts = BTreeMap<&'static str, usize>;

/// True when the digits pass the Luhn checksum.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Redacts PII; returns the text and the counts by kind (`email`, `card`, `ssn`, `phone`).
pub fn redact(text: &str) -> (String, Counts) {
    let mut counts = Counts::new();
    let mut bump = |k: &'static str| *counts.entry(k).or_default() += 1;
    let out = EMAIL.replace_all(text, |_: &regex::Captures| {
        bump("email");
        "[EMAIL]"
    });
    let out = CARD.replace_all(&out, |c: &regex::Captures| {
        let digits: String = c[0].chars().filter(char::is_ascii_digit).collect();
        if luhn(&digits) {
            bump("card");
            "[CARD]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let out = SSN.replace_all(&out, |c: &regex::Captures| {
        let area = &c[1];
        let valid = area != "000"
            && area != "666"
            && !area.starts_with('9')
            && &c[2] != "00"
            && &c[3] != "0000";
        if valid {
            bump("ssn");
            "[SSN]".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let out = PHONE.replace_all(&out, |_: &regex::Captures| {
        bump("phone");
        "[PHONE]"
    });
    (out.into_owned(), counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_and_leaves_near_misses() {
        let cases: &[(&str, &str)] = &[
            (
                "mail me at ada.l@example.co.uk please",
                "mail me at [EMAIL] please",
            ),
            ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            (
                "card 4111111111111112 fails luhn",
                "card 4111111111111112 fails luhn",
            ),
            ("ssn 123-45-6789", "ssn [SSN]"),
            (
                "not ssn 666-45-6789 or 900-12-3456",
                "not ssn 666-45-6789 or 900-12-3456",
            ),
            ("call (206) 555-0100 now", "call [PHONE] now"),
            ("call 206-555-0100", "call [PHONE]"),
            ("call +1 206.555.0100", "call [PHONE]"),
            ("intl +44 20 7946 0958", "intl [PHONE]"),
            (
                "order SNP-20230914-001 shipped",
                "order SNP-20230914-001 shipped",
            ),
            (
                "born 1990-04-12, v1.2.3, 42 boards",
                "born 1990-04-12, v1.2.3, 42 boards",
            ),
            (
                "zip 98101 and last four 1234",
                "zip 98101 and last four 1234",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input).0, *want, "input: {input}");
        }
        let (_, counts) = redact("a@b.io c@d.io 123-45-6789");
        assert_eq!(counts.get("email"), Some(&2));
        assert_eq!(counts.get("ssn"), Some(&1));
    }

    #[test]
    fn luhn_checks() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
    }
}
