//! The pages' common frame and formatting: every value shown goes through
//! [`esc`].

use std::fmt::Write;

use stacksync_proto::Account;

pub(crate) use crate::api_v2::page::escape as esc;

use super::assets;

/// Which section of the site a page belongs to (its tab is marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Files,
    Trash,
    Shared,
    Links,
    Devices,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Files, "/files", "Files"),
    (Section::Trash, "/trash", "Trash"),
    (Section::Shared, "/shared", "Sharing"),
    (Section::Links, "/links", "Links"),
    (Section::Devices, "/devices", "Devices"),
];

/// The `<head>` of every page.
fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"theme-color\" content=\"#1f5fa8\">\
         <title>{} - StackSync</title>\
         <link rel=\"stylesheet\" href=\"{}\">\
         <link rel=\"manifest\" href=\"/manifest.webmanifest\">\
         <link rel=\"icon\" href=\"{}\">\
         <script src=\"{}\" defer></script>",
        esc(title),
        assets::url("app.css"),
        assets::url("icon.svg"),
        assets::url("app.js"),
    );
}

/// A page for a visitor (sign-in, messages).
pub(crate) fn visitor_page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    head(&mut out, title);
    let _ = write!(
        out,
        "</head><body class=\"visitor\"><main id=\"main\"><div class=\"card\">\
         <p class=\"brand\"><img src=\"{}\" alt=\"\" width=\"32\" height=\"32\"> StackSync</p>{body}</div></main></body></html>",
        assets::url("icon.svg")
    );
    out
}

/// A page of a signed-in user: header with the sections, quota, sign-out.
pub(crate) fn user_page(
    title: &str,
    section: Section,
    account: &Account,
    csrf: &str,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    head(&mut out, title);
    let _ = write!(
        out,
        "<meta name=\"csrf-token\" content=\"{csrf}\"></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><a class=\"brand\" href=\"/files\"><img src=\"{icon}\" alt=\"\" width=\"28\" height=\"28\"><span>StackSync</span></a>\
         <nav aria-label=\"Sections\"><ul>",
        csrf = esc(csrf),
        icon = assets::url("icon.svg"),
    );
    for (s, href, label) in SECTIONS {
        let current = if s == section {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(out, "<li><a href=\"{href}\"{current}>{label}</a></li>");
    }
    let used = human_size(account.quota_used);
    let quota = if account.quota_limit == 0 {
        format!("{used} used")
    } else {
        format!("{used} used of {}", human_size(account.quota_limit))
    };
    let meter = if account.quota_limit == 0 {
        String::new()
    } else {
        format!(
            "<meter min=\"0\" max=\"{}\" value=\"{}\" aria-label=\"Storage used\"></meter>",
            account.quota_limit, account.quota_used
        )
    };
    let _ = write!(
        out,
        "</ul></nav><div class=\"account\"><span id=\"quota\">{quota}</span>{meter}\
         <span class=\"email\">{email}</span>\
         <form id=\"signout\" method=\"post\" action=\"/signout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form></div></header>\
         <main id=\"main\">{body}</main>\
         <div id=\"toast\" role=\"status\" aria-live=\"polite\"></div></body></html>",
        email = esc(&account.email),
        csrf = esc(csrf),
    );
    out
}

/// A size for people: 0 B, 12 KB, 3.4 MB, 1.2 GB (powers of 1000).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A time (milliseconds since the epoch) as RFC 3339 and as shown
/// (`2026-12-06 14:05 UTC`).
pub(crate) fn time(ms: i64) -> (String, String) {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return (String::new(), String::new());
    };
    let iso = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let shown = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    );
    (iso, shown)
}

/// `<time>` of a moment.
pub(crate) fn time_tag(ms: i64) -> String {
    let (iso, shown) = time(ms);
    format!("<time datetime=\"{iso}\">{shown}</time>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500), "1.5 KB");
        assert_eq!(human_size(25_000_000), "25 MB");
        assert_eq!(human_size(3_200_000_000), "3.2 GB");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0).1, "1970-01-01 00:00 UTC");
        assert_eq!(time(0).0, "1970-01-01T00:00:00Z");
    }
}
