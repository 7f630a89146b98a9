//! Names found on disk: which ones the scanner takes as they are, which
//! one it fixes, and which it reports.
//!
//! The rule for a name that is not in Unicode NFC (what some macOS tools
//! write, e.g. `cafe\u{301}.txt`): the file is renamed on disk to its
//! composed form, which looks the same, when no entry of that folder has
//! that name; renames never overwrite, so nothing is lost. Otherwise (both
//! spellings exist, or the rename fails) it is reported as not synced, with
//! why. Any other name StackSync refuses (control, bidirectional or
//! invisible characters, `..`) is reported and left alone: the user must
//! choose a new name, the client cannot guess one that says the same.

use stacksync_proto::{ItemName, NameError};

use crate::error::FsErrorKind;
use crate::io::{DirEntry, Fs};
use crate::path::RelPath;

/// What the scanner does with one raw name.
pub(crate) enum Taken {
    /// A valid name, as it is on disk.
    Valid(ItemName),
    /// A decomposed name, now renamed on disk to its composed form.
    Composed(ItemName),
    /// Not synced, with why.
    Refused(String),
}

/// Takes the raw name `raw` of an entry of folder `dir`, whose entries are
/// `listed`.
pub(crate) async fn take(fs: &dyn Fs, dir: &RelPath, raw: &str, listed: &[DirEntry]) -> Taken {
    let nfc = match ItemName::new(raw) {
        Ok(name) => return Taken::Valid(name),
        Err(NameError::NotNfc { nfc }) => nfc,
        Err(why) => return Taken::Refused(why.to_string()),
    };
    let composed = match ItemName::new(nfc) {
        Ok(name) => name,
        Err(why) => return Taken::Refused(format!("its composed form is refused: {why}")),
    };
    let twin = || {
        Taken::Refused(format!(
            "name is not in Unicode NFC and its composed form {:?} already exists in this folder",
            composed.as_str()
        ))
    };
    if listed.iter().any(|e| e.name == composed.as_str()) {
        return twin();
    }
    match fs.rename_entry(dir, raw, &composed).await {
        Ok(()) => Taken::Composed(composed),
        Err(e) if e.kind == FsErrorKind::AlreadyExists => twin(),
        Err(e) => Taken::Refused(format!(
            "name is not in Unicode NFC and renaming it to {:?} failed: {}",
            composed.as_str(),
            e.message
        )),
    }
}
