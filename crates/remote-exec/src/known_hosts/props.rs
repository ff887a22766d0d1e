//! Properties of the known_hosts parser (`make test`). A known_hosts file has no errors to
//! report (OpenSSH skips a line it cannot read, and so does this parser), so the properties
//! are: no panic on any text, the same entries twice, and a line written the way `fleet`
//! writes it (plain `[host]:port` or hashed) found again under the name it was written for.

use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;

/// A fixed key (the properties must not depend on a random one).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqow0roIWVbV2O2Opo+7/KLWvsuh1QWrG1qZh5vwLZO";

fn key() -> PublicKey {
    russh::keys::parse_public_key_base64(KEY.split(' ').nth(1).expect("base64")).expect("key")
}

fn key_text() -> String {
    KEY.to_owned()
}

/// A known_hosts line, valid or nearly: marker, host field, key, comment.
fn entry() -> impl Strategy<Value = String> {
    let marker = select(&["", "@revoked ", "@cert-authority ", "@bogus ", "@"][..]);
    let hosts = prop_oneof![
        "[a-z0-9.*?!-]{1,12}(,[a-z0-9.*?!-]{1,12}){0,3}",
        "\\[[a-z0-9.*?]{1,10}\\]:[0-9]{1,6}",
        // Hashed names: well-formed base64, broken base64, missing fields.
        "\\|1\\|[A-Za-z0-9+/]{27}=\\|[A-Za-z0-9+/]{27}=",
        "\\|1\\|[A-Za-z0-9+/=|]{0,40}",
        "\\|[0-9]\\|.{0,10}",
    ];
    let key = prop_oneof![
        Just(key_text()),
        "ssh-ed25519 [A-Za-z0-9+/=]{0,80}",
        "[a-z0-9-]{0,20}",
    ];
    let comment = select(&["", " comment", " \u{202e}x", "\t\t"][..]);
    (marker, hosts, key, comment).prop_map(|(m, h, k, c)| format!("{m}{h} {k}{c}"))
}

fn file_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![entry(), Just("# comment".to_owned()), Just(String::new())],
            0..12
        )
        .prop_map(|l| l.join("\n")),
        ".{0,300}",
        (
            proptest::collection::vec(entry(), 1..6),
            any::<Index>(),
            "[ \t\n\r#@|,!*\\[\\]:=\0]{1,3}"
        )
            .prop_map(|(lines, at, junk)| {
                let mut text = lines.join("\n");
                let mut pos = at.index(text.len() + 1);
                while !text.is_char_boundary(pos) {
                    pos -= 1;
                }
                text.insert_str(pos, &junk);
                text
            }),
    ]
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,12}",
        "\\[[a-z0-9.]{1,10}\\]:[0-9]{1,5}",
        ".{0,12}"
    ]
}

fn summary(file: &KnownHostsFile, name: &str) -> Vec<(usize, Marker)> {
    file.matching(name).map(|e| (e.line, e.marker)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_parses_without_panic_and_the_same_twice(text in file_text(), name in names()) {
        let a = KnownHostsFile::parse(&text);
        let b = KnownHostsFile::parse(&text);
        prop_assert_eq!(a.entries.len(), b.entries.len());
        prop_assert!(a.entries.len() <= text.lines().count());
        prop_assert_eq!(summary(&a, &name), summary(&b, &name));
        for e in a.matching(&name) {
            prop_assert!((1..=text.lines().count()).contains(&e.line));
        }
    }

    #[test]
    fn a_line_written_for_a_host_is_found_under_its_name(
        address in "[A-Za-z0-9.-]{1,20}",
        port in any::<u16>(),
        hashed in any::<bool>(),
        before in file_text(),
    ) {
        let name = lookup_name(&address, port);
        let written = if hashed { hash_name(&name) } else { name.clone() };
        let text = format!("{before}\n{written} {}\n", key_text());
        let file = KnownHostsFile::parse(&text);
        let last = text.lines().count();
        prop_assert!(
            file.matching(&name).any(|e| e.line == last && e.marker == Marker::None && e.key.key_data() == key().key_data()),
            "{name} not found in\n{text}"
        );
    }

    #[test]
    fn a_pattern_without_wildcards_matches_only_itself(p in "[a-z0-9.:\\[\\]-]{0,12}", q in "[a-z0-9.:\\[\\]-]{0,12}") {
        prop_assert!(glob_match(&p, &p));
        prop_assert_eq!(glob_match(&p, &q), p == q);
        prop_assert!(glob_match("*", &q));
    }
}
