//! The reference's line-oriented text records (`strEncode` / `strP` of its store logs and
//! journals): a line splitter that tells a complete line from a cut-off last one, and a cursor
//! with the common pieces (literals, base64url, numbers, `T`/`F`, words). The smp-server and
//! ntf-server importers build their record parsers on it (extension traits for their types).

use crate::encoding::base64url_token;

/// Lines of `text` with their 1-based numbers and whether they ended with `\n` (a last line
/// without one is what a writer killed mid-line leaves).
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8], bool)> {
    let mut rest = text;
    let mut n = 0usize;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        n += 1;
        match rest.iter().position(|&c| c == b'\n') {
            Some(i) => {
                let l = &rest[..i];
                rest = &rest[i + 1..];
                Some((n, l, true))
            }
            None => {
                let l = rest;
                rest = &[];
                Some((n, l, false))
            }
        }
    })
}

/// A cursor over one record's text. Errors are short messages naming `what` was expected;
/// the caller adds file and line.
#[derive(Debug)]
pub struct StrCursor<'a> {
    /// What is left of the record.
    pub s: &'a str,
}

impl<'a> StrCursor<'a> {
    pub fn new(s: &'a str) -> Self {
        StrCursor { s }
    }

    /// Takes the literal `t`.
    pub fn lit(&mut self, t: &str) -> Result<(), String> {
        match self.s.strip_prefix(t) {
            Some(r) => {
                self.s = r;
                Ok(())
            }
            None => Err(format!("expected `{}`", t.trim())),
        }
    }

    /// Takes the literal `t` if it is next.
    pub fn opt(&mut self, t: &str) -> bool {
        self.lit(t).is_ok()
    }

    /// A base64url byte string (`[A-Za-z0-9_-]+=*`).
    pub fn b64(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let (v, rest) = base64url_token(self.s).map_err(|_| format!("bad base64url {what}"))?;
        self.s = rest;
        Ok(v)
    }

    /// Whether a base64url string starts here.
    pub fn at_b64(&self) -> bool {
        self.s
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    }

    /// Text up to the next space (or the end).
    pub fn word(&mut self) -> &'a str {
        let n = self.s.find(' ').unwrap_or(self.s.len());
        let (w, r) = self.s.split_at(n);
        self.s = r;
        w
    }

    /// A decimal integer, optionally negative.
    pub fn int(&mut self, what: &str) -> Result<i64, String> {
        let n = self
            .s
            .bytes()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == b'-'))
            .count();
        let v = self.s[..n]
            .parse()
            .map_err(|_| format!("bad number {what}"))?;
        self.s = &self.s[n..];
        Ok(v)
    }

    /// `T` / `F`.
    pub fn bool(&mut self, what: &str) -> Result<bool, String> {
        if self.opt("T") {
            Ok(true)
        } else if self.opt("F") {
            Ok(false)
        } else {
            Err(format!("bad {what} (T or F)"))
        }
    }

    /// Nothing may follow.
    pub fn end(&self) -> Result<(), String> {
        if self.s.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unexpected text after the record: `{}`",
                self.s.chars().take(40).collect::<String>()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tell_a_cut_off_last_line() {
        let v: Vec<_> = lines(b"a b\n\nc").collect();
        assert_eq!(
            v,
            vec![
                (1, &b"a b"[..], true),
                (2, &b""[..], true),
                (3, &b"c"[..], false)
            ]
        );
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(
            lines(b"x\n").collect::<Vec<_>>(),
            vec![(1, &b"x"[..], true)]
        );
    }

    #[test]
    fn cursor_pieces_and_their_errors() {
        let mut c = StrCursor::new("rid=AQID -12 T word rest");
        c.lit("rid=").unwrap();
        assert!(c.at_b64());
        assert_eq!(c.b64("id").unwrap(), vec![1, 2, 3]);
        assert!(c.opt(" "));
        assert_eq!(c.int("n").unwrap(), -12);
        c.lit(" ").unwrap();
        assert!(c.bool("flag").unwrap());
        assert_eq!(c.lit("x"), Err("expected `x`".to_string()));
        c.lit(" ").unwrap();
        assert_eq!(c.word(), "word");
        assert_eq!(
            c.end(),
            Err("unexpected text after the record: ` rest`".to_string())
        );
        let mut bad = StrCursor::new("?");
        assert_eq!(bad.b64("key"), Err("bad base64url key".to_string()));
        assert_eq!(bad.int("ts"), Err("bad number ts".to_string()));
        assert_eq!(bad.bool("f"), Err("bad f (T or F)".to_string()));
        assert!(StrCursor::new("").end().is_ok());
    }
}
