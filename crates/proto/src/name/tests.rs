use super::*;

/// Checks that `name` is accepted (`expect` = "ok") or refused with the
/// error message `expect`.
#[track_caller]
fn check(name: &str, expect: &str) {
    let got = match ItemName::new(name) {
        Ok(n) => {
            assert_eq!(n.as_str(), name);
            "ok".to_owned()
        }
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect, "for {name:?}");
}

#[test]
fn structural_rules() {
    check("report.pdf", "ok");
    check("ünïcödé 文件", "ok");
    check("...", "ok");
    check("", "name is empty");
    check("a/b", "name contains '/'");
    check("a\0b", "name contains a NUL byte");
    check("..", "name is '.' or '..'");
    check(".", "name is '.' or '..'");
    check(&"é".repeat(127), "ok"); // 254 bytes
    check(&"é".repeat(128), "name is longer than 255 bytes of UTF-8");
    assert!(serde_json::from_str::<ItemName>("\"../x\"").is_err());
}

#[test]
fn control_characters_are_refused() {
    check("a\nb", "name contains the control character U+000A");
    check("a\rb", "name contains the control character U+000D");
    check("a\tb", "name contains the control character U+0009");
    check("\u{1b}[2Jx", "name contains the control character U+001B");
    check("a\u{7f}", "name contains the control character U+007F");
    check("a\u{85}b", "name contains the control character U+0085");
    check("a\u{9b}b", "name contains the control character U+009B");
    check("a\u{a0}b", "ok"); // no-break space is visible as a space
}

#[test]
fn bidi_controls_are_refused() {
    for c in [
        '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
        '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ] {
        check(
            &format!("invoice{c}txt.exe"),
            &format!(
                "name contains the bidirectional control character U+{:04X}",
                u32::from(c)
            ),
        );
    }
    // Right-to-left text itself is fine.
    check("מסמך.txt", "ok");
    check("تقرير.pdf", "ok");
}

#[test]
fn invisible_format_characters_are_refused() {
    for c in [
        '\u{ad}', '\u{180e}', '\u{200b}', '\u{2028}', '\u{2029}', '\u{2060}', '\u{2064}',
        '\u{206a}', '\u{206f}', '\u{feff}', '\u{fff9}', '\u{fffb}',
    ] {
        check(
            &format!("a{c}b"),
            &format!(
                "name contains the invisible format character U+{:04X}",
                u32::from(c)
            ),
        );
    }
    // Joiners are part of emoji sequences and several scripts.
    check("👩\u{200d}💻.png", "ok");
    check("می\u{200c}خواهم.txt", "ok");
}

#[test]
fn names_must_be_nfc() {
    check("caf\u{e9}.txt", "ok");
    check(
        "cafe\u{301}.txt",
        "name is not in Unicode normalization form C (composed); its composed form is \"caf\u{e9}.txt\"",
    );
    // Hangul syllables decomposed into jamo.
    check(
        "\u{1112}\u{1161}\u{11ab}",
        "name is not in Unicode normalization form C (composed); its composed form is \"\u{d55c}\"",
    );
    // A singleton decomposition: KELVIN SIGN is K in NFC.
    check(
        "\u{212a}elvin",
        "name is not in Unicode normalization form C (composed); its composed form is \"Kelvin\"",
    );
    let wire = serde_json::to_string("cafe\u{301}").unwrap();
    assert!(serde_json::from_str::<ItemName>(&wire).is_err());
}

#[test]
fn fold_key_equates_case_and_normalization() {
    let key = |s: &str| ItemName::new(s).expect("a valid test name").fold_key();
    for (a, b) in [
        ("Report.txt", "report.txt"),
        ("REPORT.TXT", "report.txt"),
        ("CAF\u{c9}.txt", "caf\u{e9}.txt"),
        ("Stra\u{df}e", "STRASSE"),
        (
            "\u{3a3}\u{39f}\u{3a6}\u{39f}\u{3a3}",
            "\u{3c3}\u{3bf}\u{3c6}\u{3bf}\u{3c2}",
        ),
        ("\u{1c5}", "\u{1c4}"), // title-case and upper-case DŽ
    ] {
        assert_eq!(key(a), key(b), "{a:?} and {b:?}");
    }
    for (a, b) in [
        ("a.txt", "b.txt"),
        ("cafe.txt", "caf\u{e9}.txt"),
        ("1", "١"),
    ] {
        assert_ne!(key(a), key(b), "{a:?} and {b:?}");
    }
    // The free function agrees with the method, and sees through NFD.
    assert_eq!(fold_key("CAFE\u{301}.TXT"), key("caf\u{e9}.txt"));
}

#[test]
fn printable_escapes_what_names_refuse() {
    assert!(matches!(printable("plain é.txt"), Cow::Borrowed(_)));
    assert_eq!(
        printable("invoice\u{202e}txt.exe"),
        "invoice\\u{202e}txt.exe"
    );
    assert_eq!(printable("a\nb\u{1b}[2J"), "a\\u{a}b\\u{1b}[2J");
    assert_eq!(printable("👩\u{200d}💻"), "👩\u{200d}💻");
}

#[test]
fn a_hostile_server_cannot_hand_a_client_a_deceptive_name() {
    // A change-feed page naming a file with a bidi override is refused
    // whole by the client's decoder: nothing of it reaches the disk.
    let page = format!(
        r#"{{"v":1,"body":{{"workspace":"{nil}","items":[{{"id":"{nil}","workspace":"{nil}","parent":null,"name":"invoice\u202etxt.exe","is_folder":false,"mimetype":null,"status":"NEW","version":1,"content_hash":null,"size":0,"client_modified":0,"server_modified":0,"device":"{nil}","revision":1,"chunks":[]}}],"cursor":1,"has_more":false}}}}"#,
        nil = uuid::Uuid::nil()
    );
    let err = crate::wire::decode::<crate::ChangesPage>(page.as_bytes()).unwrap_err();
    assert!(err.message.contains("U+202E"), "{}", err.message);
    // The same page with a plain name decodes (so the refusal is the name's).
    let fine = page.replace(r"invoice\u202etxt.exe", "invoice.txt");
    assert!(crate::wire::decode::<crate::ChangesPage>(fine.as_bytes()).is_ok());
}
