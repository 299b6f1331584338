//! JWTs from a district's identity provider (issue #6): with a verifier configured, a
//! grid worker's ES256 token reports a case; an expired token and one signed by another
//! key are UNAUTHENTICATED and write nothing; a department's token is scoped like a
//! department account's whistle token. Tokens are signed here with rcgen's P-256 keys
//! (ring underneath), the JWKS built from their public points.

use crate::both_backends;
use crate::support::{Backend, Client, Lifecycle, spawn_app_lifecycle};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, SigningKey};
use serde_json::{Value, json};
use tonic::Code;
use whistle_api::{JwtConfig, JwtVerifier};

both_backends!(jwts_from_the_identity_provider_authenticate_and_are_scoped);

const ISS: &str = "https://idp.qinghe.example";
const AUD: &str = "whistle";

/// base64url without padding (RFC 7515 §2).
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// An ASN.1 DER ECDSA signature (what rcgen gives) as JWS wants it: r || s, 32 bytes each.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    fn int(bytes: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(bytes[0], 0x02, "INTEGER");
        let len = usize::from(bytes[1]);
        (&bytes[2..2 + len], &bytes[2 + len..])
    }
    assert_eq!(der[0], 0x30, "SEQUENCE");
    let body = &der[2..];
    let (r, rest) = int(body);
    let (s, _) = int(rest);
    let mut out = Vec::with_capacity(64);
    for v in [r, s] {
        let v = &v[v.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - v.len()));
        out.extend_from_slice(v);
    }
    out
}

fn jwk(key: &KeyPair, kid: &str) -> Value {
    let point = key.public_key_raw();
    json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
           "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
}

fn sign(key: &KeyPair, kid: &str, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(
            json!({"alg": "ES256", "typ": "JWT", "kid": kid})
                .to_string()
                .as_bytes()
        ),
        b64url(claims.to_string().as_bytes())
    );
    let der = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64url(&der_to_fixed(&der)))
}

fn claims(sub: &str, role: &str, exp_from_now: i64) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({"iss": ISS, "aud": [AUD], "sub": sub, "whistle_role": role,
           "iat": now, "exp": now + exp_from_now})
}

fn department(sub: &str, dept: &str) -> Value {
    let mut c = claims(sub, "department", 600);
    c["whistle_department"] = json!(dept);
    c
}

async fn jwts_from_the_identity_provider_authenticate_and_are_scoped(b: Backend) {
    let idp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("idp key");
    let forger = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("other key");
    let jwks = json!({"keys": [jwk(&idp, "idp-2025")]}).to_string();
    let verifier = JwtVerifier::new(JwtConfig::new(ISS, AUD), &jwks).expect("verifier");
    // As `[jwt]` in the config file gives it (`Settings::jwt`).
    let app = spawn_app_lifecycle(
        &b,
        Lifecycle {
            jwt: Some(verifier),
            ..Lifecycle::default()
        },
    )
    .await;

    // A grid worker known only to the identity provider reports a fire hazard.
    let gw_jwt = sign(&idp, "idp-2025", &claims("idp-gw-7", "grid_worker", 600));
    assert!(gw_jwt.len() > 256, "longer than any whistle token");
    let gw = Client::connect(app.addr, &gw_jwt).await;
    let case_id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;
    let view = gw.get(&case_id).await.expect("the reporter reads it");
    assert_eq!(view.case_id, case_id);
    let timeline = gw.timeline(&case_id).await;
    assert!(
        timeline
            .entries
            .iter()
            .any(|e| e.event_type == "CaseReported"
                && e.actor
                    .as_ref()
                    .is_some_and(|a| a.principal_id == "idp-gw-7")),
        "the JWT's subject is the actor: {timeline:?}"
    );

    // Refused tokens: UNAUTHENTICATED naming the reason (never the token), nothing written.
    let before = app.event_count().await;
    let expired = sign(&idp, "idp-2025", &claims("idp-gw-7", "grid_worker", -3600));
    let forged = sign(&forger, "idp-2025", &claims("idp-gw-7", "grid_worker", 600));
    let unknown_kid = sign(&idp, "retired", &claims("idp-gw-7", "grid_worker", 600));
    for (token, reason) in [
        (&expired, "expired"),
        (&forged, "signature"),
        (&unknown_kid, "no key"),
    ] {
        let client = Client::connect(app.addr, token).await;
        let refused = client
            .report(
                "fire_hazard",
                "hongqi-jiayuan-b2",
                "should not be written",
                "",
            )
            .await
            .expect_err("refused");
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{reason}: {refused:?}"
        );
        assert!(
            refused.message().contains(reason),
            "{reason}: {}",
            refused.message()
        );
        let segments: Vec<&str> = token.split('.').collect();
        assert!(
            !refused.message().contains(segments[2]),
            "no token in the message"
        );
        assert_eq!(
            client.get(&case_id).await.expect_err("refused").code(),
            Code::Unauthenticated
        );
    }
    assert_eq!(
        app.event_count().await,
        before,
        "refused tokens wrote nothing"
    );

    // A department's JWT is scoped like a department account: the fire brigade, to which
    // routing dispatched the case, reads it; the gas company gets NOT_FOUND.
    let fire = Client::connect(
        app.addr,
        &sign(&idp, "idp-2025", &department("idp-fire-desk", "fire")),
    )
    .await;
    let gas = Client::connect(
        app.addr,
        &sign(&idp, "idp-2025", &department("idp-gas-desk", "gas")),
    )
    .await;
    let seen = fire.get(&case_id).await.expect("fire sees its case");
    assert_eq!(seen.handler, crate::support::department("fire"));
    assert_eq!(
        gas.get(&case_id).await.expect_err("not its case").code(),
        Code::NotFound
    );
    // A JWT may not claim a whistle principal's id with other powers.
    let clash = Client::connect(
        app.addr,
        &sign(&idp, "idp-2025", &department("gw-lin", "fire")),
    )
    .await;
    let refused = clash.get(&case_id).await.expect_err("clash");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("sub"), "{}", refused.message());
    // whistle's own tokens still work beside JWTs.
    let admin = app.client("admin").await;
    assert!(admin.get(&case_id).await.is_ok());
    assert_eq!(app.event_count().await, before, "reads wrote nothing");
    app.stop().await;
}
