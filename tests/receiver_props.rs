//! The push receivers are total: any headers and any body give a verdict — never a panic —
//! and only a correctly signed push is accepted. Part of the fuzzing of DESIGN's inputs from
//! outside (the manifest loader is `loader_props.rs`): CI runs a few hundred cases per
//! property; `KEEL_FUZZ_CASES=1000000 cargo test --release --test receiver_props --test
//! loader_props` runs a long campaign (docs/guarantees.md).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use hmac::{Hmac, Mac};
use keel::api::hooks::{pushed_branch, verify, Forge};
use proptest::prelude::*;
use sha2::Sha256;

const NOW: i64 = 1_800_000_000;
const GENERIC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn cases() -> u32 {
    std::env::var("KEEL_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300)
}

fn forge() -> impl Strategy<Value = Forge> {
    prop_oneof![
        Just(Forge::Github),
        Just(Forge::Gitlab),
        Just(Forge::Gitea),
        Just(Forge::Generic)
    ]
}

fn secret(forge: Forge) -> &'static str {
    match forge {
        Forge::Generic => GENERIC_SECRET,
        Forge::Github | Forge::Gitlab | Forge::Gitea => "hook-secret",
    }
}

/// Header values as a client could send them: the receivers' own names with arbitrary
/// (visible ASCII) values, or numbers at the edges for the timestamp.
fn headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let name = prop_oneof![
        Just("x-hub-signature-256"),
        Just("x-gitea-signature"),
        Just("x-gitlab-token"),
        Just("webhook-id"),
        Just("webhook-timestamp"),
        Just("webhook-signature"),
    ];
    let value = prop_oneof![
        "[ -~]{0,80}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("v1,".to_owned()),
        Just(format!("sha256={}", "0".repeat(64))),
    ];
    proptest::collection::vec((name, value), 0..6)
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    map
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers a forge sends for `body`, signed with the right secret.
fn signed(forge: Forge, body: &[u8], id: &str) -> HeaderMap {
    let s = secret(forge);
    let pairs: Vec<(&'static str, String)> = match forge {
        Forge::Github => vec![(
            "x-hub-signature-256",
            format!("sha256={}", hex(&hmac(s.as_bytes(), &[body]))),
        )],
        Forge::Gitea => vec![("x-gitea-signature", hex(&hmac(s.as_bytes(), &[body])))],
        Forge::Gitlab => vec![("x-gitlab-token", s.to_owned())],
        Forge::Generic => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(s.trim_start_matches("whsec_"))
                .unwrap();
            let ts = NOW.to_string();
            let mac = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            let signature = base64::engine::general_purpose::STANDARD.encode(mac);
            vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts),
                ("webhook-signature", format!("v1,{signature}")),
            ]
        }
    };
    header_map(&pairs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_headers_and_body_get_a_verdict_and_forgeries_are_refused(
        forge in forge(),
        pairs in headers(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        now in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        let verdict = verify(forge, secret(forge), &header_map(&pairs), &body, now);
        // Random headers carry the right HMAC with negligible probability; GitLab's token
        // is the secret itself, which the generator never produces.
        prop_assert!(verdict.is_err(), "accepted a forgery: {pairs:?}");
        let _ = pushed_branch(&body);
    }

    #[test]
    fn a_correctly_signed_push_is_accepted_and_a_changed_body_is_not(
        forge in forge(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        id in "[a-z0-9_]{1,24}",
        flip in any::<prop::sample::Index>(),
    ) {
        let headers = signed(forge, &body, &id);
        prop_assert_eq!(verify(forge, secret(forge), &headers, &body, NOW), Ok(()));
        let mut tampered = body.clone();
        let at = flip.index(tampered.len());
        tampered[at] ^= 0x01;
        if forge != Forge::Gitlab {
            prop_assert!(verify(forge, secret(forge), &headers, &tampered, NOW).is_err());
        }
    }

    #[test]
    fn any_body_gives_a_branch_or_none(text in "\\PC{0,200}", branch in "[a-z0-9/._-]{1,30}") {
        let _ = pushed_branch(text.as_bytes());
        let body = format!("{{\"ref\":\"refs/heads/{branch}\"}}");
        prop_assert_eq!(pushed_branch(body.as_bytes()), Some(branch));
    }
}
