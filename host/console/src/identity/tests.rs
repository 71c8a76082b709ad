use super::*;
use p256::ecdsa::SigningKey;
use serde_json::json;

const SIGNER: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/bs/50dc6c495c0c9188";
const NOW: i64 = 1_800_000_000;

fn signing_key(label: &str) -> SigningKey {
    use sha2::Digest as _;
    SigningKey::from_slice(&sha2::Sha256::digest(label.as_bytes())).expect("a scalar")
}

fn verifier() -> AlbVerifier {
    let config = ConsoleConfig {
        signer: SIGNER.into(),
        // Nothing listens here: a key not in the cache cannot be fetched.
        key_url: Some("http://127.0.0.1:9/".into()),
        group_claim: "groups".into(),
        roles: vec![crate::config::RoleGrant {
            role: Role::Releaser,
            groups: vec!["secops".into()],
            email_domains: vec![],
            users: vec![],
        }],
    };
    let verifier = AlbVerifier::new(config);
    verifier
        .keys
        .lock()
        .unwrap()
        .insert("key-1".into(), *signing_key("alb").verifying_key());
    verifier
}

fn header(kid: &str, signer: &str) -> serde_json::Value {
    json!({"alg": "ES256", "kid": kid, "signer": signer, "iss": "https://idp.example.com", "client": "c", "exp": NOW + 60})
}

fn claims() -> serde_json::Value {
    json!({"sub": "u-1", "email": "ana@example.com", "email_verified": "true", "groups": ["secops"], "exp": NOW + 60})
}

async fn verify(token: &str) -> Result<User, IdentityError> {
    verifier().verify(Some(token.as_bytes()), NOW).await
}

#[tokio::test]
async fn a_token_signed_by_the_load_balancer_names_the_user_and_role() {
    let token = sign_like_alb(&signing_key("alb"), &header("key-1", SIGNER), &claims());
    assert!(token.contains('='), "padded like the load balancer's: {token}");
    let user = verify(&token).await.unwrap();
    assert_eq!(user.name(), "ana@example.com");
    assert_eq!(user.role, Some(Role::Releaser));
    assert!(user.may(Role::Viewer) && !user.may(Role::Admin));
}

#[tokio::test]
async fn another_key_another_signer_or_another_algorithm_is_refused() {
    let forged = sign_like_alb(&signing_key("attacker"), &header("key-1", SIGNER), &claims());
    assert_eq!(verify(&forged).await.unwrap_err(), IdentityError::Signature);
    let elsewhere = SIGNER.replace("bs/", "other/");
    let other_lb = sign_like_alb(&signing_key("alb"), &header("key-1", &elsewhere), &claims());
    assert!(matches!(verify(&other_lb).await, Err(IdentityError::Signer(s)) if s == elsewhere));
    let mut none = header("key-1", SIGNER);
    none["alg"] = json!("none");
    let unsigned = sign_like_alb(&signing_key("alb"), &none, &claims());
    assert_eq!(
        verify(&unsigned).await.unwrap_err(),
        IdentityError::Algorithm("none".into())
    );
    // A kid the endpoint has no key for, or one that is not an id.
    let unknown = sign_like_alb(&signing_key("alb"), &header("key-2", SIGNER), &claims());
    assert!(matches!(verify(&unknown).await, Err(IdentityError::Key { .. })));
    let traversal = sign_like_alb(&signing_key("alb"), &header("../x", SIGNER), &claims());
    assert!(matches!(verify(&traversal).await, Err(IdentityError::Key { detail, .. }) if detail == "not a key id"));
}

#[tokio::test]
async fn changed_claims_an_expired_token_or_no_token_is_refused() {
    let token = sign_like_alb(&signing_key("alb"), &header("key-1", SIGNER), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut admin = claims();
    admin["groups"] = json!(["secops", "admins"]);
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE.encode(admin.to_string()),
        parts[2]
    );
    assert_eq!(verify(&swapped).await.unwrap_err(), IdentityError::Signature);
    let mut old = header("key-1", SIGNER);
    old["exp"] = json!(NOW - 3600);
    let expired = sign_like_alb(&signing_key("alb"), &old, &claims());
    assert_eq!(verify(&expired).await.unwrap_err(), IdentityError::Expired);
    assert_eq!(verifier().verify(None, NOW).await.unwrap_err(), IdentityError::Missing);
    assert!(matches!(verify("a.b").await, Err(IdentityError::Malformed(_))));
}

#[tokio::test]
async fn a_user_without_a_mapped_group_has_no_role() {
    let mut outsider = claims();
    outsider["groups"] = json!("engineering, sales");
    let token = sign_like_alb(&signing_key("alb"), &header("key-1", SIGNER), &outsider);
    let user = verify(&token).await.unwrap();
    assert_eq!(user.claims.groups, ["engineering", "sales"]);
    assert_eq!(user.role, None);
    assert!(!user.may(Role::Viewer));
}
