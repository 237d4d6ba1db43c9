//! The small part of JSON that a safetensors header needs.
//!
//! [`Parser`] is a pull parser over the header text: the caller asks for the value
//! it expects next (an object, a string, an array of non-negative integers) and
//! skips whatever it does not know with [`Parser::skip_value`]. It builds no tree,
//! so memory stays proportional to what the caller keeps, and nesting deeper than
//! [`MAX_DEPTH`] is an error rather than a stack overflow. Every malformed input is
//! a [`JsonError`] that says what was expected and at which byte.
//!
//! Writing needs only [`write_string`] and [`write_array`]; the header's fixed
//! structure is plain `format!`.

use std::collections::BTreeSet;
use std::fmt;

/// Deepest nesting of arrays and objects that [`Parser::skip_value`] accepts.
pub(crate) const MAX_DEPTH: usize = 64;

/// Malformed JSON: what is wrong, and at which byte of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// Byte offset into the text where the problem was found.
    pub(crate) pos: usize,
    /// What is wrong there.
    pub(crate) msg: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.pos, self.msg)
    }
}

/// A cursor over JSON text that reads one expected value at a time.
///
/// The position always sits on a character boundary: it only ever steps over
/// ASCII bytes or over whole runs of string content.
pub(crate) struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    /// Reads an object. After each key and its colon, calls `entry(self, key)`,
    /// which must consume the value. A key that appears twice is an error.
    pub(crate) fn object<E: From<JsonError>>(
        &mut self,
        mut entry: impl FnMut(&mut Self, String) -> Result<(), E>,
    ) -> Result<(), E> {
        self.expect(b'{', "an object")?;
        if self.eat(b'}') {
            return Ok(());
        }
        let mut seen = BTreeSet::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            let key = self.string()?;
            if !seen.insert(key.clone()) {
                return Err(JsonError {
                    pos: at,
                    msg: format!("duplicate key {key:?}"),
                }
                .into());
            }
            self.expect(b':', "':'")?;
            entry(self, key)?;
            if !self.next_element(b'}', "',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// Reads an array of non-negative integers that fit in a `u64`.
    pub(crate) fn u64_array(&mut self) -> Result<Vec<u64>, JsonError> {
        self.expect(b'[', "an array")?;
        let mut values = Vec::new();
        if self.eat(b']') {
            return Ok(values);
        }
        loop {
            values.push(self.u64()?);
            if !self.next_element(b']', "',' or ']'")? {
                return Ok(values);
            }
        }
    }

    /// Reads a string, decoding its escapes.
    pub(crate) fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"', "a string")?;
        let start = self.pos - 1;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let Some(run) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') else {
                return Err(JsonError {
                    pos: start,
                    msg: "unterminated string".into(),
                });
            };
            out.push_str(&rest[..run]);
            self.pos += run;
            if self.bump_if(b'"') {
                return Ok(out);
            }
            if !self.bump_if(b'\\') {
                return Err(self.error("control character in a string (it must be escaped)"));
            }
            out.push(self.escape()?);
        }
    }

    /// Reads and discards any value, nested at most [`MAX_DEPTH`] deep.
    pub(crate) fn skip_value(&mut self) -> Result<(), JsonError> {
        self.skip_nested(0)
    }

    /// Checks that only whitespace is left.
    pub(crate) fn finish(mut self) -> Result<(), JsonError> {
        self.skip_ws();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(self.error(format!(
                "unexpected {} after the JSON value",
                self.describe_next()
            )))
        }
    }

    // ----- values ---------------------------------------------------------------

    fn skip_nested(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(|p, _| p.skip_nested(depth + 1)),
            Some(b'[') => self.skip_array(depth),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(self.error(format!("expected a value, found {}", self.describe_next()))),
        }
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), JsonError> {
        self.expect(b'[', "an array")?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.skip_nested(depth + 1)?;
            if !self.next_element(b']', "',' or ']'")? {
                return Ok(());
            }
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(format!("expected a value, found {}", self.describe_next())))
        }
    }

    fn u64(&mut self) -> Result<u64, JsonError> {
        self.skip_ws();
        let start = self.pos;
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            let found = self.describe_next();
            return Err(self.error(format!("expected a non-negative integer, found {found}")));
        }
        let lexeme = self.number()?;
        let error = |msg: String| JsonError { pos: start, msg };
        if !lexeme.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(format!("expected a non-negative integer, found {lexeme}")));
        }
        lexeme
            .parse()
            .map_err(|_| error(format!("integer {lexeme} does not fit in 64 bits")))
    }

    /// Consumes a number (JSON grammar) and returns its text.
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        self.bump_if(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            _ => self.digits()?,
        }
        if self.bump_if(b'.') {
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(&self.text[start..self.pos])
    }

    /// Consumes one or more ASCII digits.
    fn digits(&mut self) -> Result<(), JsonError> {
        let n = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(self.error(format!("expected a digit, found {}", self.describe_next())));
        }
        self.pos += n;
        Ok(())
    }

    /// Decodes the escape after a backslash.
    fn escape(&mut self) -> Result<char, JsonError> {
        let start = self.pos - 1;
        Ok(match self.bump() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(start),
            _ => {
                return Err(JsonError {
                    pos: start,
                    msg: "invalid escape in a string".into(),
                })
            }
        })
    }

    /// Decodes `XXXX` after `\u`, and the low half of a surrogate pair after it.
    fn unicode_escape(&mut self, start: usize) -> Result<char, JsonError> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            let low = if self.bump_if(b'\\') && self.bump_if(b'u') {
                self.hex4()?
            } else {
                0
            };
            if !(0xDC00..0xE000).contains(&low) {
                return Err(JsonError {
                    pos: start,
                    msg: "unpaired surrogate in a \\u escape".into(),
                });
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| JsonError {
            pos: start,
            msg: "unpaired surrogate in a \\u escape".into(),
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = self.peek().and_then(|b| char::from(b).to_digit(16));
            let digit = digit.ok_or_else(|| self.error("expected 4 hex digits after \\u"))?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    // ----- cursor -----------------------------------------------------------------

    /// An error at the current position.
    fn error(&self, msg: impl Into<String>) -> JsonError {
        JsonError {
            pos: self.pos,
            msg: msg.into(),
        }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `byte` if it comes next (no whitespace skipping).
    fn bump_if(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.pos += usize::from(hit);
        hit
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        self.bump_if(byte)
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), JsonError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.describe_next())))
        }
    }

    /// After an element: `true` on ',' (another follows), `false` on `close`.
    fn next_element(&mut self, close: u8, what: &str) -> Result<bool, JsonError> {
        if self.eat(b',') {
            Ok(true)
        } else {
            self.expect(close, what).map(|()| false)
        }
    }

    fn describe_next(&self) -> String {
        match self.rest().chars().next() {
            Some(c) => format!("{c:?}"),
            None => "the end of the text".into(),
        }
    }
}

/// Appends `s` as a JSON string literal, escaped the way the reference writer
/// (serde_json) escapes, so that our headers match its byte for byte.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `values` as a compact JSON array of integers: `[1,2,3]`.
pub(crate) fn write_array(out: &mut String, values: &[usize]) {
    let items: Vec<String> = values.iter().map(usize::to_string).collect();
    out.push('[');
    out.push_str(&items.join(","));
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_string(text: &str) -> Result<String, JsonError> {
        let mut p = Parser::new(text);
        let s = p.string()?;
        p.finish()?;
        Ok(s)
    }

    fn parse_array(text: &str) -> Result<Vec<u64>, JsonError> {
        let mut p = Parser::new(text);
        let v = p.u64_array()?;
        p.finish()?;
        Ok(v)
    }

    fn skip(text: &str) -> Result<(), JsonError> {
        let mut p = Parser::new(text);
        p.skip_value()?;
        p.finish()
    }

    fn entries(text: &str) -> Result<Vec<(String, String)>, JsonError> {
        let mut p = Parser::new(text);
        let mut out = Vec::new();
        p.object(|p, k| {
            out.push((k, p.string()?));
            Ok::<(), JsonError>(())
        })?;
        p.finish()?;
        Ok(out)
    }

    fn msg<T: std::fmt::Debug>(r: Result<T, JsonError>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn strings_decode_every_escape() {
        let s = parse_string(r#""a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(s, "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti\u{41}\u{e9}\u{1f600}");
        assert_eq!(
            parse_string("\"h\u{e9}llo \u{1f600}\"").unwrap(),
            "h\u{e9}llo \u{1f600}"
        );
        assert_eq!(parse_string(" \"\" ").unwrap(), "");
    }

    #[test]
    fn bad_strings_are_errors_with_positions() {
        assert_eq!(msg(parse_string("\"abc")), "at byte 0: unterminated string");
        assert_eq!(
            msg(parse_string("\"ab\\x\"")),
            "at byte 3: invalid escape in a string"
        );
        assert!(msg(parse_string("\"a\nb\"")).starts_with("at byte 2: control character"));
        assert!(msg(parse_string(r#""\ud83d""#)).contains("unpaired surrogate"));
        assert!(msg(parse_string(r#""\ud83dx""#)).contains("unpaired surrogate"));
        assert!(msg(parse_string(r#""\ude00""#)).contains("unpaired surrogate"));
        assert!(msg(parse_string(r#""\ud83d\u0041""#)).contains("unpaired surrogate"));
        assert!(msg(parse_string(r#""\u12""#)).contains("4 hex digits"));
        assert!(msg(parse_string(r#""\u+123""#)).contains("4 hex digits"));
        assert!(msg(parse_string("\"\\")).contains("invalid escape"));
        assert!(msg(parse_string("12")).contains("expected a string"));
    }

    #[test]
    fn integer_arrays() {
        assert_eq!(parse_array("[]").unwrap(), Vec::<u64>::new());
        assert_eq!(
            parse_array(" [ 0 , 7,18446744073709551615 ] ").unwrap(),
            vec![0, 7, u64::MAX]
        );
        assert!(msg(parse_array("[18446744073709551616]")).contains("does not fit in 64 bits"));
        assert!(msg(parse_array("[-1]")).contains("expected a non-negative integer, found -1"));
        assert!(msg(parse_array("[2.0]")).contains("found 2.0"));
        assert!(msg(parse_array("[1e3]")).contains("found 1e3"));
        assert!(msg(parse_array("[01]")).contains("expected ',' or ']'"));
        assert!(msg(parse_array("[1,]")).contains("expected a non-negative integer"));
        assert!(msg(parse_array("[1 2]")).contains("expected ',' or ']'"));
        assert!(msg(parse_array("[1")).contains("the end of the text"));
        assert!(msg(parse_array("[\"1\"]")).contains("expected a non-negative integer"));
        assert!(msg(parse_array("{}")).contains("expected an array"));
    }

    #[test]
    fn objects_pass_each_key_and_reject_duplicates() {
        let got = entries(r#" { "a" : "1", "b":"2" } "#).unwrap();
        assert_eq!(got, [("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert_eq!(entries("{}").unwrap(), []);
        assert_eq!(
            msg(entries(r#"{"a":"1","a":"2"}"#)),
            "at byte 9: duplicate key \"a\""
        );
        assert!(msg(entries(r#"{"a" "1"}"#)).contains("expected ':'"));
        assert!(msg(entries(r#"{"a":"1",}"#)).contains("expected a string"));
        assert!(msg(entries(r#"{"a":"1""#)).contains("expected ',' or '}'"));
        assert!(msg(entries(r#"{a:"1"}"#)).contains("expected a string"));
        assert!(msg(entries("[]")).contains("expected an object, found '['"));
        assert!(msg(entries("")).contains("expected an object, found the end of the text"));
        assert!(msg(entries("{} x")).contains("unexpected 'x' after the JSON value"));
    }

    #[test]
    fn skip_accepts_every_kind_of_value() {
        for text in [
            "null",
            "true",
            "false",
            "0",
            "-0.5e+10",
            "12E-3",
            "\"s\\n\"",
            "[]",
            "{}",
            r#"{"a":[1,{"b":null},"c",-2.5,true],"d":{}}"#,
        ] {
            assert_eq!(skip(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn skip_rejects_malformed_values() {
        for text in [
            "", "nul", "tru", "+1", "-", "1.", ".5", "1e", "[1,]", "{\"a\"}", "[", "'a'", "NaN",
        ] {
            assert!(skip(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(skip(&ok), Ok(()));
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(msg(skip(&deep)).contains("nested deeper than 64 levels"));
        let deep_objects = "{\"a\":".repeat(100_000);
        assert!(msg(skip(&deep_objects)).contains("nested deeper"));
    }

    #[test]
    fn writer_escapes_like_serde_json() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}/\u{e9}");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}/\u{e9}\"");
        let mut arr = String::new();
        write_array(&mut arr, &[]);
        write_array(&mut arr, &[3, 0, 12]);
        assert_eq!(arr, "[][3,0,12]");
    }

    proptest! {
        #[test]
        fn written_strings_parse_back(s in any::<String>()) {
            let mut out = String::new();
            write_string(&mut out, &s);
            prop_assert_eq!(parse_string(&out).unwrap(), s);
        }

        #[test]
        fn written_arrays_parse_back(v in proptest::collection::vec(any::<usize>(), 0..8)) {
            let mut out = String::new();
            write_array(&mut out, &v);
            let expected: Vec<u64> = v.iter().map(|&x| x as u64).collect();
            prop_assert_eq!(parse_array(&out).unwrap(), expected);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,40}") {
            let _ = skip(&s);
            let _ = parse_string(&s);
            let _ = parse_array(&s);
            let _ = entries(&s);
        }
    }
}
