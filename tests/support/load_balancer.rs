//! A local stand-in for the Application Load Balancer in front of the
//! console: it serves its public key by `kid` (as the region's key
//! endpoint does), and for each signed-in user a port that forwards every
//! request to the console with `x-amzn-oidc-data` signed for that user —
//! dropping any such header the client sent, as the real one does.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;
use std::sync::Arc;

/// The ARN the stand-in signs as (the console's `signer`).
pub const SIGNER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/bucketscan/0123456789abcdef";
pub const KID: &str = "3f2e1d0c-test-key";

/// A deterministic P-256 key from `label` (tests sign as "the load
/// balancer" or as an attacker with another key).
pub fn signing_key(label: &str) -> SigningKey {
    use sha2::Digest as _;
    SigningKey::from_slice(&sha2::Sha256::digest(label.as_bytes())).expect("a P-256 scalar")
}

/// A token as the load balancer would send it for `claims`.
pub fn token(key: &SigningKey, signer: &str, claims: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 120;
    let header = json!({"alg": "ES256", "kid": KID, "signer": signer, "iss": "https://idp.test", "client": "console", "exp": exp});
    let mut claims = claims;
    claims["exp"] = json!(exp);
    bucketscan_console::identity::sign_like_alb(key, &header, &claims)
}

/// The stand-in's key endpoint (`[serve.console] key-url`).
pub struct KeyEndpoint {
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl KeyEndpoint {
    pub async fn start() -> Self {
        let pem = signing_key("load balancer")
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let app = Router::new().route(
            "/{kid}",
            get(move |Path(kid): Path<String>| {
                let pem = pem.clone();
                async move {
                    if kid == KID {
                        pem.into_response()
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                }
            }),
        );
        let (url, server) = serve(app).await;
        Self {
            url: format!("{url}/"),
            _server: server,
        }
    }
}

/// One signed-in user's way in: `url` reaches the console as them.
pub struct SignedIn {
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

struct Forward {
    upstream: String,
    claims: serde_json::Value,
    http: reqwest::Client,
}

impl SignedIn {
    /// Forwards to `upstream` (`http://127.0.0.1:PORT`) as the user
    /// `claims` describe.
    pub async fn start(upstream: &str, claims: serde_json::Value) -> Self {
        let forward = Arc::new(Forward {
            upstream: upstream.to_owned(),
            claims,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let app = Router::new().fallback(proxy).with_state(forward);
        let (url, server) = serve(app).await;
        Self { url, _server: server }
    }
}

async fn proxy(State(forward): State<Arc<Forward>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let url = format!(
        "{}{}",
        forward.upstream,
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut upstream = forward.http.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !name.as_str().starts_with("x-amzn-oidc") {
            upstream = upstream.header(name, value);
        }
    }
    let token = token(&signing_key("load balancer"), SIGNER, forward.claims.clone());
    upstream = upstream.header("x-amzn-oidc-data", token);
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = response.body(Body::from(bytes)).unwrap();
    response.headers_mut().remove("transfer-encoding");
    response
        .headers_mut()
        .insert("x-stand-in", HeaderValue::from_static("load-balancer"));
    response
}

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}
