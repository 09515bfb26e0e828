//! The node's control API: HTTP/JSON on loopback (by default), one route per registry
//! operation, and the node's state. Bad input — malformed JSON, an unknown operation, an
//! oversized body, a wrong method — gets a 4xx with a JSON `{"error": …}` saying what is
//! wrong, and the node keeps serving.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /state` | | peer id, pid, listen addresses, connected peers, packages |
//! | `POST /bootstrap` | `{"peers": ["/ip4/…/tcp/…/p2p/12D3…"]}` | `{"connected": n}` |
//! | `POST /publish` | `{"id": "acme/tool", "version": "1.0.0", "title": "A tool"}` (optional: `metadata`, `dependencies`) | `{"published": "acme/tool@1.0.0"}` |
//! | `POST /search` | `{"text": "tool", "limit": 10}` (optional: `categories`, `tags`, `offset`) | `{"packages": [{"id", "version", "metadata", "dependencies", "title"}]}` |
//! | `POST /get` | `{"id": "acme/tool", "version": "1.0.0"}` | `{"package": {…}}` |
//! | `POST /list_versions` | `{"id": "acme/tool"}` | `{"versions": ["1.0.0"]}` |
//! | `POST /exists` | `{"id": "acme/tool"}` | `{"exists": true}` |
//! | `POST /delete` | `{"id": "acme/tool"}` | `{"deleted": "acme/tool"}` |
//! | `POST /block`, `POST /unblock` | `{"peers": ["12D3…"]}` | `{"blocked": n}` / `{"unblocked": n}` |
//! | `POST /wait` | `{"connected_peers": 2, "packages": 1, "timeout_ms": 10000}` | the state once it holds, or 504 with the state |
//! | `POST /flush` | `{}` | `{"flushed": true}` once its spans and metrics are exported |
//!
//! `/wait` is how a driver waits honestly: the node answers when its own state — which
//! wakes it on every change — satisfies the condition, never by being polled. Its fields
//! are lower bounds, all optional but `timeout_ms`: `connected_peers`, `packages`,
//! `topic_peers`, `mesh_peers`, `routing_peers`, and `connected_to` (peer ids).
//!
//! A failed operation answers `{"error": "…", "kind": "timeout", "detail": {…}}`: the
//! message, and the node's `MarketplaceError` as JSON, so a driver gets the typed error
//! back.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::api::{Id, IdVersion, Peers, Publish, Search, Wait};
use p2p_otel_marketplace::{
    MarketplaceError, NodeCondition, P2PRegistry, Package, PackageId, Query, Registry,
    RegistryNode, Version,
};
use p2p_otel_testkit::libp2p::{Multiaddr, PeerId};
use p2p_otel_testkit::mesh::Mesh;
use p2p_otel_testkit::telemetry::PerNode;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
pub struct Node {
    pub mesh: Mesh<RegistryNode>,
    pub registry: P2PRegistry,
    pub telemetry: Option<PerNode>,
}

type Shared = State<Arc<Node>>;

/// An answer: a status and a JSON body.
struct Answer(StatusCode, serde_json::Value);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn ok(body: serde_json::Value) -> Answer {
    Answer(StatusCode::OK, body)
}

fn bad_request(message: impl std::fmt::Display) -> Answer {
    Answer(
        StatusCode::BAD_REQUEST,
        json!({ "error": message.to_string() }),
    )
}

/// A registry error as an HTTP status: the caller's input (400), nothing there (404), the
/// network's time (504), the rest (502: the node is up, the network below it failed).
fn failed(error: MarketplaceError) -> Answer {
    let status = match error {
        MarketplaceError::InvalidPackageId(_)
        | MarketplaceError::InvalidVersion(_)
        | MarketplaceError::PackageTooLarge { .. } => StatusCode::BAD_REQUEST,
        MarketplaceError::NotFound(_) => StatusCode::NOT_FOUND,
        MarketplaceError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut body = serde_json::to_value(&error).unwrap_or_else(|_| json!({}));
    if let Some(fields) = body.as_object_mut() {
        fields.insert("error".to_owned(), json!(error.to_string()));
    }
    Answer(status, body)
}

/// The body, or a 400 (or 413, 415) saying why it is not what the route reads.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Answer> {
    body.map(|Json(value)| value).map_err(|rejection| {
        Answer(
            rejection.status(),
            json!({ "error": rejection.body_text() }),
        )
    })
}

/// A package as the API answers it: the whole package, and its title at the top for
/// whoever reads the answer by eye.
#[derive(Serialize)]
struct PackageView<'p> {
    #[serde(flatten)]
    package: &'p Package,
    title: &'p str,
}

impl<'p> From<&'p Package> for PackageView<'p> {
    fn from(package: &'p Package) -> Self {
        PackageView {
            package,
            title: &package.metadata.title,
        }
    }
}

fn package_id(text: &str) -> Result<PackageId, Answer> {
    text.parse().map_err(failed)
}

fn version(text: &str) -> Result<Version, Answer> {
    text.parse().map_err(failed)
}

/// `/ip4/…/p2p/<peer>` → the peer and the address.
fn peer_address(text: &str) -> Result<(PeerId, Multiaddr), Answer> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| bad_request(format!("{text:?} is not a multiaddr: {e}")))?;
    match addr.iter().last() {
        Some(p2p_otel_testkit::libp2p::multiaddr::Protocol::P2p(peer)) => Ok((peer, addr)),
        _ => Err(bad_request(format!(
            "{text:?} does not end in /p2p/<peer id>: a bootstrap peer needs its identity"
        ))),
    }
}

fn peer_id(text: &str) -> Result<PeerId, Answer> {
    text.parse()
        .map_err(|e| bad_request(format!("{text:?} is not a peer id: {e}")))
}

async fn state(State(node): Shared) -> Answer {
    let listen: Vec<String> = node
        .mesh
        .listen_addrs(0)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let peer = node
        .mesh
        .peer_id(0)
        .map(|p| p.to_string())
        .unwrap_or_default();
    match node.registry.stats().await {
        Ok(stats) => ok(json!({
            "peer_id": peer,
            "pid": std::process::id(),
            "listen_addrs": listen,
            "connected_peers": stats.connected_peers,
            "packages": stats.packages,
            "cache_hits": stats.cache_hits,
            "cache_misses": stats.cache_misses,
        })),
        Err(error) => failed(error),
    }
}

/// The most a `/wait` may ask for.
const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

async fn wait(State(node): Shared, request: Result<Json<Wait>, JsonRejection>) -> Answer {
    let run = async {
        let request = body(request)?;
        let timeout = std::time::Duration::from_millis(request.timeout_ms);
        if timeout > LONGEST_WAIT {
            return Err(bad_request(format!(
                "timeout_ms {} is longer than the {} s a wait may take",
                request.timeout_ms,
                LONGEST_WAIT.as_secs()
            )));
        }
        let condition = NodeCondition {
            connected_peers: request.connected_peers,
            packages: request.packages,
            topic_peers: request.topic_peers,
            mesh_peers: request.mesh_peers,
            routing_peers: request.routing_peers,
            connected_to: request
                .connected_to
                .iter()
                .map(|p| peer_id(p))
                .collect::<Result<_, _>>()?,
        };
        let waited = node
            .mesh
            .wait_until(&condition.to_string(), timeout, |states| {
                states.first().is_some_and(|s| condition.holds(s))
            })
            .await;
        match waited {
            Ok(_) => Ok(state(State(Arc::clone(&node))).await),
            Err(error) => Err(Answer(
                StatusCode::GATEWAY_TIMEOUT,
                json!({ "error": error.to_string() }),
            )),
        }
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn flush(State(node): Shared) -> Answer {
    let Some(telemetry) = &node.telemetry else {
        return ok(
            json!({ "flushed": false, "why": "the node exports nothing (no --otlp-endpoint)" }),
        );
    };
    match telemetry.flush().await {
        Ok(()) => ok(json!({ "flushed": true })),
        Err(error) => Answer(
            StatusCode::BAD_GATEWAY,
            json!({ "error": format!("cannot export: {error}") }),
        ),
    }
}

async fn bootstrap(State(node): Shared, request: Result<Json<Peers>, JsonRejection>) -> Answer {
    let run = async {
        let peers = body(request)?
            .peers
            .iter()
            .map(|p| peer_address(p))
            .collect::<Result<Vec<_>, _>>()?;
        let connected = node.registry.bootstrap_from(peers).await.map_err(failed)?;
        Ok(ok(json!({ "connected": connected })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn publish(State(node): Shared, request: Result<Json<Publish>, JsonRejection>) -> Answer {
    let run = async {
        let request = body(request)?;
        let mut metadata = request.metadata.unwrap_or_default();
        if let Some(title) = request.title {
            if !metadata.title.is_empty() && metadata.title != title {
                return Err(bad_request(format!(
                    "title {title:?} and metadata.title {:?} differ: give one",
                    metadata.title
                )));
            }
            metadata.title = title;
        }
        let dependencies = request
            .dependencies
            .into_iter()
            .map(|(id, requirement)| Ok((package_id(&id)?, requirement)))
            .collect::<Result<_, Answer>>()?;
        let package = Package {
            id: package_id(&request.id)?,
            version: version(&request.version)?,
            metadata,
            dependencies,
        };
        let published = format!("{}@{}", package.id, package.version);
        node.registry.publish(package).await.map_err(failed)?;
        Ok(ok(json!({ "published": published })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn search(State(node): Shared, request: Result<Json<Search>, JsonRejection>) -> Answer {
    let run = async {
        let request = body(request)?;
        let query = Query {
            text: request.text,
            categories: request.categories,
            tags: request.tags,
            limit: request.limit,
            offset: request.offset,
        };
        let found = node.registry.search(&query).await.map_err(failed)?;
        let packages: Vec<PackageView> = found.iter().map(PackageView::from).collect();
        Ok(ok(json!({ "packages": packages })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn get_package(
    State(node): Shared,
    request: Result<Json<IdVersion>, JsonRejection>,
) -> Answer {
    let run = async {
        let request = body(request)?;
        let package = node
            .registry
            .get_package_version(&package_id(&request.id)?, &version(&request.version)?)
            .await
            .map_err(failed)?;
        Ok(ok(json!({ "package": PackageView::from(&package) })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn list_versions(State(node): Shared, request: Result<Json<Id>, JsonRejection>) -> Answer {
    let run = async {
        let id = package_id(&body(request)?.id)?;
        let versions = node.registry.list_versions(&id).await.map_err(failed)?;
        let versions: Vec<String> = versions.iter().map(ToString::to_string).collect();
        Ok(ok(json!({ "versions": versions })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn exists(State(node): Shared, request: Result<Json<Id>, JsonRejection>) -> Answer {
    let run = async {
        let id = package_id(&body(request)?.id)?;
        let exists = node.registry.exists(&id).await.map_err(failed)?;
        Ok(ok(json!({ "exists": exists })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn delete(State(node): Shared, request: Result<Json<Id>, JsonRejection>) -> Answer {
    let run = async {
        let id = package_id(&body(request)?.id)?;
        node.registry.delete(&id).await.map_err(failed)?;
        Ok(ok(json!({ "deleted": id.to_string() })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn block_or_unblock(
    node: &Node,
    request: Result<Json<Peers>, JsonRejection>,
    blocked: bool,
) -> Answer {
    let run = async {
        let peers = body(request)?
            .peers
            .iter()
            .map(|p| peer_id(p))
            .collect::<Result<Vec<_>, _>>()?;
        let count = peers.len();
        node.mesh
            .block_peers(0, peers, blocked)
            .await
            .map_err(|e| {
                Answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": e.to_string() }),
                )
            })?;
        let key = if blocked { "blocked" } else { "unblocked" };
        Ok(ok(json!({ key: count })))
    };
    run.await.unwrap_or_else(|answer| answer)
}

async fn block(State(node): Shared, request: Result<Json<Peers>, JsonRejection>) -> Answer {
    block_or_unblock(&node, request, true).await
}

async fn unblock(State(node): Shared, request: Result<Json<Peers>, JsonRejection>) -> Answer {
    block_or_unblock(&node, request, false).await
}

const ROUTES: &str = "GET /state; POST /wait, /flush, /bootstrap, /publish, /search, /get, /list_versions, /exists, /delete, /block, /unblock";

async fn unknown() -> Answer {
    Answer(
        StatusCode::NOT_FOUND,
        json!({ "error": format!("no such operation: the routes are {ROUTES}") }),
    )
}

async fn wrong_method() -> Answer {
    Answer(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({ "error": format!("wrong method: the routes are {ROUTES}") }),
    )
}

/// The API's routes over `node`.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/wait", post(wait))
        .route("/flush", post(flush))
        .route("/bootstrap", post(bootstrap))
        .route("/publish", post(publish))
        .route("/search", post(search))
        .route("/get", post(get_package))
        .route("/list_versions", post(list_versions))
        .route("/exists", post(exists))
        .route("/delete", post(delete))
        .route("/block", post(block))
        .route("/unblock", post(unblock))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(node)
}
