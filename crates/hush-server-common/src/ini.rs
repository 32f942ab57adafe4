//! A small, strict INI reader for hush's server configuration files (`smp-server.ini`, reference
//! §7.2; `ntf-server.ini` and `push-server.ini` use the same grammar).
//!
//! Hand-written on purpose (instead of e.g. `rust-ini`): the operator must get an error that names the
//! line of every problem (and a warning that names the line of every unknown key), which needs the line
//! number of each entry; the reader must also bound line and file sizes and report invalid UTF-8 per
//! line instead of failing on the whole file. The grammar is the one the reference's files use:
//!
//! * `[SECTION]` starts a section (name trimmed, non-empty);
//! * `key = value` or `key: value` (the first `=` or `:` separates; key and value are trimmed);
//! * lines whose first non-blank character is `#` or `;` are comments; blank lines are ignored;
//! * there are no inline comments: `key = a # b` has the value `a # b`;
//! * a section may appear more than once (its entries are merged); a key may appear only once per section.

use std::fmt;

/// Longest accepted line, in bytes (without the line terminator).
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Largest accepted file, in bytes.
pub const MAX_FILE_LEN: usize = 4 * 1024 * 1024;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// One section with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// 1-based line number of the first `[name]` header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed INI document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    pub sections: Vec<Section>,
}

/// What is wrong with a line (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    #[error("file is {len} bytes, over the limit of {max} bytes")]
    FileTooLarge { len: usize, max: usize },
    #[error("line {line}: line is {len} bytes long, over the limit of {max} bytes")]
    LineTooLong { line: usize, len: usize, max: usize },
    #[error("line {line}: not valid UTF-8")]
    InvalidUtf8 { line: usize },
    #[error("line {line}: section header must look like [NAME]")]
    BadSectionHeader { line: usize },
    #[error("line {line}: key `{key}` appears before any [SECTION] header")]
    EntryOutsideSection { line: usize, key: String },
    #[error("line {line}: expected `key = value`, a [SECTION] header or a # comment")]
    NoSeparator { line: usize },
    #[error("line {line}: empty key")]
    EmptyKey { line: usize },
    #[error("line {line}: [{section}] {key} is set twice (first on line {first_line})")]
    DuplicateKey {
        line: usize,
        section: String,
        key: String,
        first_line: usize,
    },
}

impl IniError {
    /// The 1-based line the error is about, if it is about one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            IniError::FileTooLarge { .. } => None,
            IniError::LineTooLong { line, .. }
            | IniError::InvalidUtf8 { line }
            | IniError::BadSectionHeader { line }
            | IniError::EntryOutsideSection { line, .. }
            | IniError::NoSeparator { line }
            | IniError::EmptyKey { line }
            | IniError::DuplicateKey { line, .. } => Some(*line),
        }
    }
}

impl Ini {
    /// Parses raw file bytes. Never panics; every problem is an [`IniError`] naming its line.
    pub fn parse(bytes: &[u8]) -> Result<Ini, IniError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(IniError::FileTooLarge {
                len: bytes.len(),
                max: MAX_FILE_LEN,
            });
        }
        // A UTF-8 byte order mark at the very start is tolerated (some editors write one).
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut ini = Ini::default();
        let mut current: Option<usize> = None;
        for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = idx + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.len() > MAX_LINE_LEN {
                return Err(IniError::LineTooLong {
                    line: line_no,
                    len: raw.len(),
                    max: MAX_LINE_LEN,
                });
            }
            let text =
                std::str::from_utf8(raw).map_err(|_| IniError::InvalidUtf8 { line: line_no })?;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
                continue;
            }
            if let Some(rest) = text.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
                    .ok_or(IniError::BadSectionHeader { line: line_no })?;
                current = Some(match ini.sections.iter().position(|s| s.name == name) {
                    Some(pos) => pos,
                    None => {
                        ini.sections.push(Section {
                            name: name.to_string(),
                            line: line_no,
                            entries: Vec::new(),
                        });
                        ini.sections.len() - 1
                    }
                });
                continue;
            }
            let sep = text
                .find(['=', ':'])
                .ok_or(IniError::NoSeparator { line: line_no })?;
            let (key, value) = (text[..sep].trim(), text[sep + 1..].trim());
            if key.is_empty() {
                return Err(IniError::EmptyKey { line: line_no });
            }
            let section = match current.and_then(|i| ini.sections.get_mut(i)) {
                Some(s) => s,
                None => {
                    return Err(IniError::EntryOutsideSection {
                        line: line_no,
                        key: key.to_string(),
                    });
                }
            };
            if let Some(first) = section.entries.iter().find(|e| e.key == key) {
                return Err(IniError::DuplicateKey {
                    line: line_no,
                    section: section.name.clone(),
                    key: key.to_string(),
                    first_line: first.line,
                });
            }
            section.entries.push(Entry {
                key: key.to_string(),
                value: value.to_string(),
                line: line_no,
            });
        }
        Ok(ini)
    }

    /// The section called `name`, if present.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The entry `key` of section `section`, if present.
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)?.entries.iter().find(|e| e.key == key)
    }
}

impl fmt::Display for Ini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sections {
            writeln!(f, "[{}]", s.name)?;
            for e in &s.entries {
                writeln!(f, "{} = {}", e.key, e.value)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_entries_and_comments() {
        let ini = Ini::parse(
            b"# top comment\n[A]\nx = 1\ny: two words \n; c\n\n[B]\nz=\n[A]\nw = a # not a comment\r\n",
        )
        .unwrap();
        assert_eq!(ini.sections.len(), 2);
        assert_eq!(ini.get("A", "x").unwrap().value, "1");
        assert_eq!(ini.get("A", "y").unwrap().value, "two words");
        assert_eq!(ini.get("A", "y").unwrap().line, 4);
        assert_eq!(ini.get("B", "z").unwrap().value, "");
        assert_eq!(ini.get("A", "w").unwrap().value, "a # not a comment");
        assert!(ini.get("B", "x").is_none());
    }

    #[test]
    fn first_separator_wins() {
        let ini = Ini::parse(b"[P]\nsocks_proxy = localhost:9050\nk: a=b\n").unwrap();
        assert_eq!(ini.get("P", "socks_proxy").unwrap().value, "localhost:9050");
        assert_eq!(ini.get("P", "k").unwrap().value, "a=b");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            Ini::parse(b"[A]\nx = 1\nx = 2\n"),
            Err(IniError::DuplicateKey {
                line: 3,
                section: "A".into(),
                key: "x".into(),
                first_line: 2
            })
        );
        assert_eq!(
            Ini::parse(b"x = 1\n"),
            Err(IniError::EntryOutsideSection {
                line: 1,
                key: "x".into()
            })
        );
        assert_eq!(
            Ini::parse(b"[A]\njunk\n"),
            Err(IniError::NoSeparator { line: 2 })
        );
        assert_eq!(
            Ini::parse(b"[A\n"),
            Err(IniError::BadSectionHeader { line: 1 })
        );
        assert_eq!(
            Ini::parse(b"[]\n"),
            Err(IniError::BadSectionHeader { line: 1 })
        );
        assert_eq!(
            Ini::parse(b"[A]\n = v\n"),
            Err(IniError::EmptyKey { line: 2 })
        );
        assert_eq!(
            Ini::parse(b"[A]\nk = \xff\xfe\n"),
            Err(IniError::InvalidUtf8 { line: 2 })
        );
    }

    #[test]
    fn limits() {
        let mut long = b"[A]\nk = ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN));
        assert!(matches!(
            Ini::parse(&long),
            Err(IniError::LineTooLong { line: 2, .. })
        ));
        let mut ok = b"[A]\nk = ".to_vec();
        ok.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN - 4));
        assert_eq!(
            Ini::parse(&ok).unwrap().get("A", "k").unwrap().value.len(),
            MAX_LINE_LEN - 4
        );
        let big = vec![b'#'; MAX_FILE_LEN + 1];
        assert!(matches!(
            Ini::parse(&big),
            Err(IniError::FileTooLarge { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        let ini = Ini::parse(b"[A]\nx = 1\ny = a b\n[B]\nz = \n").unwrap();
        let again = Ini::parse(ini.to_string().as_bytes()).unwrap();
        assert_eq!(
            ini.sections
                .iter()
                .map(|s| (
                    &s.name,
                    s.entries
                        .iter()
                        .map(|e| (&e.key, &e.value))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>(),
            again
                .sections
                .iter()
                .map(|s| (
                    &s.name,
                    s.entries
                        .iter()
                        .map(|e| (&e.key, &e.value))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        // A deterministic sweep over short byte strings built from the interesting alphabet.
        let alphabet: &[u8] = b"[]=:#;\n\r a\xff\xc3";
        let mut buf = Vec::new();
        for n in 0..20_000u32 {
            buf.clear();
            let mut x = n;
            for _ in 0..6 {
                buf.push(alphabet[(x as usize) % alphabet.len()]);
                x /= alphabet.len() as u32;
                if x == 0 {
                    break;
                }
            }
            let _ = Ini::parse(&buf);
        }
    }
}
