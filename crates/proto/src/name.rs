//! File and folder names: what StackSync accepts, how names are compared,
//! and how they are shown.
//!
//! The rules (one home; the server and every client apply the same ones):
//!
//! * A name is one path component: not empty, at most 255 bytes of UTF-8, no
//!   `/`, not `.` or `..`.
//! * No character that can hide what a name says or rewrite a terminal:
//!   C0 and C1 control characters (NUL, tab, newline, ESC, ..., DEL), the
//!   Unicode bidirectional controls (U+061C, U+200E, U+200F,
//!   U+202A–U+202E, U+2066–U+2069: `invoice\u{202E}txt.exe` shows as
//!   `invoiceexe.txt`), and the invisible format characters listed in
//!   [`InvisibleKind`]'s table ([`refused_char`]). Zero-width joiner and
//!   non-joiner (U+200C, U+200D) stay allowed: emoji sequences and several
//!   scripts need them.
//! * The name is in Unicode Normalization Form C, so that `café` typed on
//!   Linux (composed) and saved by a macOS tool (decomposed) is one name.
//! * Two live siblings may not have names equal under Unicode case folding
//!   plus normalization ([`ItemName::fold_key`]): `Report.txt` and
//!   `report.txt` cannot both live in one folder, because they would
//!   collide on the case-insensitive file systems of macOS and Windows.
//!   The server enforces this with a unique index over the key.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {max} bytes of UTF-8", max = ItemName::MAX_BYTES)]
    TooLong,
    #[error("name contains '/'")]
    Slash,
    #[error("name contains a NUL byte")]
    Nul,
    #[error("name is '.' or '..'")]
    Dot,
    /// A control character, a bidirectional control or an invisible
    /// format character.
    #[error("name contains the {kind} character {}", code_point(*.ch))]
    Refused {
        /// The offending character.
        ch: char,
        /// Which class it belongs to.
        kind: InvisibleKind,
    },
    /// The name is not in Unicode NFC; `nfc` is its composed form.
    #[error("name is not in Unicode normalization form C (composed); its composed form is \"{}\"", printable(.nfc))]
    NotNfc {
        /// The same name, composed.
        nfc: String,
    },
}

/// The classes of characters a name may not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvisibleKind {
    /// C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F) controls.
    Control,
    /// Bidirectional formatting: U+061C, U+200E, U+200F, U+202A–U+202E,
    /// U+2066–U+2069.
    Bidi,
    /// Other characters that show nothing: soft hyphen U+00AD, Mongolian
    /// vowel separator U+180E, zero-width space U+200B, line and paragraph
    /// separators U+2028–U+2029, word joiner and invisible operators
    /// U+2060–U+2064, deprecated format controls U+206A–U+206F, the byte
    /// order mark U+FEFF and interlinear annotations U+FFF9–U+FFFB.
    Invisible,
}

impl fmt::Display for InvisibleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvisibleKind::Control => "control",
            InvisibleKind::Bidi => "bidirectional control",
            InvisibleKind::Invisible => "invisible format",
        })
    }
}

/// The class of `c` if names may not contain it.
pub fn refused_char(c: char) -> Option<InvisibleKind> {
    match c {
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => Some(InvisibleKind::Control),
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some(InvisibleKind::Bidi)
        }
        '\u{ad}'
        | '\u{180e}'
        | '\u{200b}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{2060}'..='\u{2064}'
        | '\u{206a}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' => Some(InvisibleKind::Invisible),
        _ => None,
    }
}

/// `U+202E`: how an error names a character.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `s` with every character a name may not contain written as `\u{…}`, so
/// that printing a name (or a raw name found on disk) cannot move the
/// cursor, clear the screen or reverse what follows. Borrowed when there
/// is nothing to escape.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| refused_char(c).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if refused_char(c).is_some() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A validated file or folder name: one path component (see the module
/// docs for the rules).
///
/// Anything else a file system might refuse (a backslash on Windows, say)
/// is the client's business.
///
/// A clone shares the bytes: a client holds each name several times (the
/// server's tree, the synced tree, every path under a folder), and at
/// 100,000 files a copy of each would cost megabytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemName(Arc<str>);

impl ItemName {
    /// Longest name, in bytes of UTF-8 (the common file-system limit).
    pub const MAX_BYTES: usize = 255;

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<ItemName, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > Self::MAX_BYTES {
            return Err(NameError::TooLong);
        }
        if name.contains('/') {
            return Err(NameError::Slash);
        }
        if name.contains('\0') {
            return Err(NameError::Nul);
        }
        if name == "." || name == ".." {
            return Err(NameError::Dot);
        }
        if let Some((ch, kind)) = name.chars().find_map(|c| refused_char(c).map(|k| (c, k))) {
            return Err(NameError::Refused { ch, kind });
        }
        if !unicode_normalization::is_nfc(&name) {
            return Err(NameError::NotNfc {
                nfc: name.nfc().collect(),
            });
        }
        Ok(ItemName(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which two sibling names collide: full Unicode case
    /// folding of the decomposed name, composed again (Unicode's canonical
    /// caseless match). `Report.txt`, `REPORT.TXT` and `report.txt` share
    /// one key; so do `Straße` and `STRASSE`. Stored by the server beside
    /// each name; a live key is unique within a folder.
    pub fn fold_key(&self) -> String {
        fold_key(&self.0)
    }
}

/// [`ItemName::fold_key`] of any string (a name stored before the key
/// existed may not be a valid [`ItemName`] today).
pub fn fold_key(name: &str) -> String {
    let decomposed: String = name.nfd().collect();
    unicase::UniCase::unicode(decomposed.as_str())
        .to_folded_case()
        .nfc()
        .collect()
}

impl Serialize for ItemName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ItemName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ItemName::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ItemName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests;
