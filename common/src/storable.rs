//! Tenant text on its way into PostgreSQL.
//!
//! PostgreSQL's `text` cannot hold the byte 0x00 (`invalid byte sequence for encoding "UTF8":
//! 0x00`) and `jsonb` refuses the escape `\u0000` (`unsupported Unicode escape sequence`), so
//! one NUL in a function's output would make its whole execution record unwritable. Whatever a
//! function produced (result, error, logs) passes through here before it is stored: each
//! U+0000 becomes U+FFFD (the replacement character), everything else is kept as it is.
//!
//! `result` is JSON *text* in a `text` column: a JSON escape `\u0000` in it is six ordinary
//! characters and is kept; only a raw NUL (a runtime that answers non-JSON bytes) is replaced.
//! `error` is `jsonb`: NULs in its strings and keys are replaced, so the stored object says
//! what the function said, minus the NULs.

use std::borrow::Cow;

/// What a NUL becomes.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether the text can be stored as it is.
pub fn is_storable(text: &str) -> bool {
    !text.contains('\0')
}

/// The text with every U+0000 replaced; borrowed when there is none.
pub fn text(text: &str) -> Cow<'_, str> {
    if is_storable(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    }
}

/// Replaces every U+0000 of `text` in place (no allocation when there is none).
pub fn fix_text(text: &mut String) {
    if !is_storable(text) {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

/// Replaces every U+0000 in the strings and keys of a JSON value, in place.
pub fn fix_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => fix_text(s),
        Value::Array(items) => items.iter_mut().for_each(fix_json),
        Value::Object(map) => {
            if map.keys().any(|k| !is_storable(k)) {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    fix_json(&mut item);
                    map.insert(text(&key).into_owned(), item);
                }
            } else {
                map.values_mut().for_each(fix_json);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_becomes_the_replacement_character_and_nothing_else_changes() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("\0", "\u{FFFD}"),
            ("a\0b\0", "a\u{FFFD}b\u{FFFD}"),
            ("ünï\u{1F600}", "ünï\u{1F600}"),
            // A JSON escape is six ordinary characters: text columns hold it.
            ("\"a\\u0000b\"", "\"a\\u0000b\""),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "{input:?}");
            let mut owned = input.to_owned();
            fix_text(&mut owned);
            assert_eq!(owned, expected, "{input:?}");
            assert_eq!(is_storable(input), input == expected, "{input:?}");
        }
        assert!(matches!(text("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_strings_and_keys_lose_their_nuls() {
        let mut value = json!({
            "errorType": "Value\u{0}Error",
            "errorMessage": "bad\u{0}",
            "stackTrace": ["line\u{0}1", 2, null, {"k\u{0}": ["\u{0}"]}],
            "n": 1.5,
        });
        fix_json(&mut value);
        assert_eq!(
            value,
            json!({
                "errorType": "Value\u{FFFD}Error",
                "errorMessage": "bad\u{FFFD}",
                "stackTrace": ["line\u{FFFD}1", 2, null, {"k\u{FFFD}": ["\u{FFFD}"]}],
                "n": 1.5,
            })
        );
        assert!(!value.to_string().contains("\\u0000"));
    }
}
