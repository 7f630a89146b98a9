//! How a file's bytes are served to a browser, in one place for the API's
//! downloads, the website and shared links: the type (the uploader's if it
//! is a well-formed one, else guessed from the name), and whether it may
//! be shown inline (only types a browser cannot run) or must be saved.

/// The type a file is served with and whether a browser may show it
/// inline: the uploader's type (or one guessed from the name), inline only
/// for types a browser cannot run.
pub(crate) fn served_type(mimetype: Option<&str>, name: &str) -> (String, bool) {
    let kind = given_type(mimetype)
        .or_else(|| guessed_type(name).map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let inline = (kind.starts_with("image/") && kind != "image/svg+xml")
        || kind.starts_with("audio/")
        || kind.starts_with("video/")
        || kind == "application/pdf"
        || kind == "text/plain";
    (kind, inline)
}

/// The type an uploader gave (a `Content-Type`, parameters dropped), if
/// it is a well-formed one that says something.
pub(crate) fn given_type(raw: Option<&str>) -> Option<String> {
    raw.map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
    .filter(|t| is_mime(t) && t != "application/octet-stream")
}

/// A plain `type/subtype` of token characters.
fn is_mime(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    t.len() <= 127 && t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

/// The type of a few common files by extension, for files whose uploader
/// gave none (a desktop client's).
fn guessed_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "pdf" => "application/pdf",
        "txt" | "text" | "log" | "md" => "text/plain",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "m4a" => "audio/mp4",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "svg" => "image/svg+xml",
        "html" | "htm" => "text/html",
        _ => return None,
    })
}

/// `Content-Disposition` for `name`: an ASCII fallback and the UTF-8 name
/// (RFC 6266, RFC 8187).
pub(crate) fn disposition(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_browser_cannot_run_is_inline() {
        let check = served_type;
        assert_eq!(check(Some("image/png"), "a"), ("image/png".into(), true));
        assert_eq!(check(None, "a.JPG"), ("image/jpeg".into(), true));
        assert_eq!(check(None, "a.pdf"), ("application/pdf".into(), true));
        assert_eq!(
            check(Some("text/plain; charset=utf-8"), "a"),
            ("text/plain".into(), true)
        );
        assert_eq!(check(None, "a.svg"), ("image/svg+xml".into(), false));
        assert_eq!(
            check(Some("text/html"), "a.txt"),
            ("text/html".into(), false)
        );
        assert_eq!(
            check(Some("application/octet-stream"), "a.html"),
            ("text/html".into(), false)
        );
        assert_eq!(
            check(Some("bad type\r\n"), "a"),
            ("application/octet-stream".into(), false)
        );
    }

    #[test]
    fn names_are_given_twice_in_a_disposition() {
        assert_eq!(
            disposition("attachment", "résumé \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22%2Epdf"
        );
    }
}
