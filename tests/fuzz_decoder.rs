//! Property-based fuzzing of the channel decoder: framing, fd bookkeeping and message
//! parsing never panic, and split reads reassemble exactly. A short run is part of
//! `make test`; `scripts/fuzz-long` runs it for as long as you like
//! (`PROPTEST_CASES`); failures are kept in `tests/fuzz_decoder.proptest-regressions`.

use std::os::fd::OwnedFd;

use cluster::testing::ipc::codec::Decoder;
use cluster::testing::ipc::{message, user_json};
use proptest::prelude::*;

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// Feeds `data` in the given chunk sizes, with an fd on the chunks flagged; returns the
/// lines (and whether each had an fd) or the first error.
fn run(data: &[u8], chunks: &[(usize, bool)], cap: usize) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let mut d = Decoder::new(cap);
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let (n, with_fd) = chunks.get(i).copied().unwrap_or((rest.len(), false));
        i += 1;
        let n = n.clamp(1, rest.len());
        let fds = if with_fd { vec![devnull()] } else { vec![] };
        d.feed(&rest[..n], fds).map_err(|e| e.message)?;
        rest = &rest[n..];
        loop {
            let (text, eligible) = match d.next_line() {
                None => break,
                Some(l) => {
                    let l = l.map_err(|e| e.message)?;
                    (l.text.to_vec(), l.fd_eligible)
                }
            };
            // Every line the decoder gives is parsed as the channel would.
            let _ = message::parse(&text);
            let took = eligible && message::is_handle_line(&text) && d.take_fd().is_some();
            out.push((text, took));
        }
        d.finish_read().map_err(|e| e.message)?;
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_and_fds_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                           chunks in proptest::collection::vec((1usize..512, any::<bool>()), 0..64),
                                           cap in 1usize..2048) {
        let _ = run(&data, &chunks, cap);
    }

    #[test]
    fn valid_lines_reassemble_whatever_the_split(values in proptest::collection::vec("[ -~]{0,40}", 1..20),
                                                 chunks in proptest::collection::vec(1usize..64, 0..64)) {
        let lines: Vec<String> = values.iter().map(|v| serde_json::to_string(v).unwrap()).collect();
        let data: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        let chunks: Vec<(usize, bool)> = chunks.into_iter().map(|n| (n, false)).collect();
        let got = run(&data, &chunks, 1 << 20).unwrap();
        let got: Vec<String> = got.into_iter().map(|(l, _)| String::from_utf8(l).unwrap()).collect();
        prop_assert_eq!(got, lines);
    }

    #[test]
    fn an_fd_binds_to_the_line_that_starts_in_its_read(prefix in "[a-z]{1,20}", body in "[a-z]{1,20}", split in 1usize..10) {
        // An earlier line, then a NODE_HANDLE line whose first byte arrives with the fd.
        // The kernel may glue the earlier line's tail into the fd's read: the fd still goes
        // to the NODE_HANDLE line.
        let first = format!("\"{prefix}\"\n");
        let handle = format!("{{\"cmd\":\"NODE_HANDLE\",\"msg\":\"{body}\"}}\n");
        let data = format!("{first}{handle}");
        let cut = first.len().min(split).min(first.len() - 1).max(1);
        let chunks = vec![(cut, false), (data.len() - cut, true)];
        let got = run(data.as_bytes(), &chunks, 1 << 20).unwrap();
        prop_assert_eq!(got.len(), 2);
        prop_assert!(!got[0].1);
        prop_assert!(got[1].1, "the fd went with the NODE_HANDLE line");
    }

    #[test]
    fn parse_never_panics(text in ".{0,200}") {
        let _ = message::parse(text.as_bytes());
        let _ = user_json::user_line(&text);
    }

    /// A user line is the sender's text minus whitespace outside strings (issue 12): one
    /// line, the same value, unchanged by a second pass, and delivered as that text.
    #[test]
    fn user_lines_pass_text_through(lead in WS, text in json_text(), trail in WS) {
        let sent = format!("{lead}{text}{trail}");
        let line = user_json::user_line(&sent).unwrap();
        prop_assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        prop_assert!(!body.contains(&b'\n'));
        let mut again = Vec::new();
        user_json::strip_whitespace(body, &mut again);
        prop_assert_eq!(&again[..], body, "no whitespace left outside strings");
        // The same value, where serde_json can hold it (not 1e400, not a lone surrogate).
        if let (Ok(a), Ok(b)) = (serde_json::from_str::<serde_json::Value>(&sent), serde_json::from_slice::<serde_json::Value>(body)) {
            prop_assert_eq!(a, b);
        }
        // Exactly the sent text without that whitespace: every key, number and string
        // byte for byte, in order.
        let mut expected = Vec::new();
        user_json::strip_whitespace(sent.as_bytes(), &mut expected);
        prop_assert_eq!(&expected[..], body);
        // The receiver delivers exactly that text.
        let got = cluster::testing::ipc::inbound::classify(body, None).unwrap().inbound.unwrap();
        prop_assert!(matches!(&got, cluster::testing::ipc::inbound::Inbound::User { json } if json.as_bytes() == body), "{:?}", got);
    }
}

const WS: &str = "[ \t\r\n]{0,3}";

/// JSON text with whitespace anywhere it may be, numbers of any size, and strings with every
/// kind of escape (a lone surrogate too).
fn json_text() -> impl Strategy<Value = String> {
    let string = r#""([a-z {}\[\],:]|\\[nt"\\/bfr]|\\u00e9|\\ud83d\\ude00|\\ud800|é|😀)*""#;
    let leaf = prop_oneof![
        r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
        string,
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec((WS, inner.clone(), WS), 0..4)
                .prop_map(|v| format!("[{}]", v.into_iter().map(|(a, b, c)| format!("{a}{b}{c}")).collect::<Vec<_>>().join(","))),
            proptest::collection::vec((WS, string, WS, WS, inner, WS), 0..4).prop_map(|v| format!(
                "{{{}}}",
                v.into_iter().map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}")).collect::<Vec<_>>().join(",")
            )),
        ]
    })
}

/// The committed corpus (`tests/fuzz_corpus`: real Node lines and hostile ones) replayed
/// in every split of up to 7 chunk sizes, with and without an fd on the first chunk.
#[test]
fn corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        for chunk in 1..=7usize {
            for with_fd in [false, true] {
                let chunks: Vec<(usize, bool)> = (0..data.len()).map(|i| (chunk, with_fd && i == 0)).collect();
                let _ = run(&data, &chunks, 1 << 20);
            }
        }
    }
    assert!(files >= 5, "the corpus is there");
}
