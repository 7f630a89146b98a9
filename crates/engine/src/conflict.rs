//! Names of conflicted copies: `NAME (conflicted copy from DEVICE
//! YYYY-MM-DD HHMMSS).EXT`.

use stacksync_proto::{ItemName, Millis};

/// The name under which a losing local version is kept. `attempt` 1 gives
/// the plain form; higher attempts add a counter, for when that name is
/// taken too. The stem is shortened so the result fits in a name.
pub fn conflicted_copy_name(
    original: &ItemName,
    is_folder: bool,
    device: &str,
    now: Millis,
    attempt: u32,
) -> ItemName {
    let name = original.as_str();
    // ".bashrc" has no extension; folders never do.
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && !is_folder => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let device: String = device
        .chars()
        // Names refuse control and bidirectional characters (NUL among them).
        .map(|c| {
            if c == '/' || stacksync_proto::name::refused_char(c).is_some() {
                '_'
            } else {
                c
            }
        })
        .take(64)
        .collect();
    let counter = if attempt > 1 {
        format!(" {attempt}")
    } else {
        String::new()
    };
    let suffix = format!(
        " (conflicted copy from {device} {}{counter}){ext}",
        format_utc(now)
    );
    let room = ItemName::MAX_BYTES.saturating_sub(suffix.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let candidate = format!("{}{suffix}", &stem[..cut]);
    // The parts are a valid name, a sanitized device name and digits; if
    // the extension alone is too long, fall back to a bare suffix.
    ItemName::new(candidate).unwrap_or_else(|_| {
        ItemName::new(format!("conflicted copy {}{counter}", format_utc(now)))
            .expect("a fixed ASCII name without '/' is a valid name")
    })
}

/// Whether `name` could be one [`conflicted_copy_name`] makes: every name it
/// makes contains "conflicted copy" (a focused plan looks at the siblings
/// that do, see `planner::focus`).
pub fn may_be_copy(name: &ItemName) -> bool {
    name.as_str().contains("conflicted copy")
}

/// `YYYY-MM-DD HHMMSS` in UTC.
pub fn format_utc(millis: Millis) -> String {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Days since 1970-01-01 to a proleptic Gregorian date, by counting 400-year
// eras (146097 days each) that start on March 1st so leap days fall last.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> ItemName {
        ItemName::new(s).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 000000");
        assert_eq!(format_utc(951_782_400_000 + 3_723_000), "2000-02-29 010203");
        assert_eq!(format_utc(1_764_028_800_000), "2025-11-25 000000");
    }

    #[test]
    fn names() {
        let t = 1_764_028_800_000;
        assert_eq!(
            conflicted_copy_name(&n("report.pdf"), false, "laptop", t, 1).as_str(),
            "report (conflicted copy from laptop 2025-11-25 000000).pdf"
        );
        assert_eq!(
            conflicted_copy_name(&n(".bashrc"), false, "a/b", t, 2).as_str(),
            ".bashrc (conflicted copy from a_b 2025-11-25 000000 2)"
        );
        assert_eq!(
            conflicted_copy_name(&n("my.dir"), true, "pc", t, 1).as_str(),
            "my.dir (conflicted copy from pc 2025-11-25 000000)"
        );
        let long = "x".repeat(255);
        assert!(
            conflicted_copy_name(&n(&long), false, "pc", t, 1)
                .as_str()
                .len()
                <= 255
        );
    }
}
