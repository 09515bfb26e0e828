//! Nodes as child processes: your node binary, started by a test, waited for honestly,
//! driven over its control API, killed — and never outliving the test.
//!
//! The protocol a node binary follows: once ready, it prints one line on stdout that
//! starts with `node ` and carries `key=value` fields (the reference marketplace's
//! `p2p-otel-testkit node` prints `node peer_id=… control=http://… listen=… pid=…`).
//! [`NodeProcess::spawn`] waits for that line — not a sleep — and fails with the
//! binary's name and its stderr if it exits first or stays silent too long. Dropping a
//! [`NodeProcess`] kills the child (also when a test panics).
//!
//! With a real node: `NodeProcess::spawn("target/debug/my-node", ["--seed", "1"], timeout)`,
//! then `node.post("/publish", &json)` and `node.get("/state")` on its control API. Here,
//! a shell stands in for a node binary:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), p2p_otel_testkit::process::ProcessError> {
//! use std::time::Duration;
//! use p2p_otel_testkit::process::{NodeProcess, ProcessError};
//!
//! let script = "echo starting; echo 'node peer_id=12D3KooW control=http://127.0.0.1:9'; exec sleep 60";
//! let mut node = NodeProcess::spawn("sh", ["-c", script], Duration::from_secs(10)).await?;
//! assert_eq!(node.field("peer_id"), Some("12D3KooW"));
//! assert!(!node.kill().await?.success()); // kill -9
//!
//! // A binary that fails before it is ready: the error quotes its stderr.
//! let error = NodeProcess::spawn("sh", ["-c", "echo 'no key file' >&2; exit 2"], Duration::from_secs(10))
//!     .await
//!     .unwrap_err();
//! assert!(matches!(error, ProcessError::Exited { .. }));
//! assert!(error.to_string().contains("no key file"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::HttpClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How much of a child's stderr is kept for error messages (the end of it).
const STDERR_KEPT: usize = 8 * 1024;

/// Why a node process did not start, answer or stop as asked.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The binary could not be started at all.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited before printing its ready line.
    #[error("{program} exited ({status}) before it was ready; its stderr:\n{stderr}")]
    Exited {
        /// The binary.
        program: String,
        /// How it ended.
        status: String,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
    /// It printed no ready line in time.
    #[error(
        "{program} printed no `node …` ready line within {after:?}; its stderr so far:\n{stderr}"
    )]
    NotReady {
        /// The binary.
        program: String,
        /// How long it was given.
        after: Duration,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
    /// Its ready line has no `control=` field, so it cannot be driven.
    #[error("{program}'s ready line has no control= field: {line:?}")]
    NoControl {
        /// The binary.
        program: String,
        /// The line.
        line: String,
    },
    /// A control request failed, or was answered with an error status.
    #[error("{method} {url}: {message}")]
    Control {
        /// GET or POST.
        method: &'static str,
        /// The URL.
        url: String,
        /// The transport error, or the status and the node's answer.
        message: String,
        /// The node's answer when it answered with an error status and a JSON body (the
        /// reference node's `{"error": …, "kind": …}`), for a driver that maps it back
        /// to a typed error.
        answer: Option<serde_json::Value>,
    },
    /// Waiting for it to end failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The binary.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A node running as a child process of the test.
#[derive(Debug)]
pub struct NodeProcess {
    program: String,
    /// `None` once dropped (the kill and the reaping move to a task).
    child: Option<Child>,
    pid: u32,
    fields: BTreeMap<String, String>,
    stderr: Arc<Mutex<String>>,
    control: Control,
    /// Becomes `true` once the child ended and was reaped.
    reaped: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Keeps the last `STDERR_KEPT` bytes of the child's stderr; the task ends at its EOF.
fn keep_stderr(child: &mut Child) -> (Arc<Mutex<String>>, Option<tokio::task::JoinHandle<()>>) {
    let kept = Arc::new(Mutex::new(String::new()));
    let mut reader = None;
    if let Some(mut stderr) = child.stderr.take() {
        let sink = Arc::clone(&kept);
        reader = Some(tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                let mut text = crate::store::lock(&sink);
                text.push_str(&String::from_utf8_lossy(&buffer[..read]));
                if text.len() > STDERR_KEPT {
                    let cut = text.len() - STDERR_KEPT;
                    let cut = (cut..text.len())
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(text.len());
                    text.drain(..cut);
                }
            }
        }));
    }
    (kept, reader)
}

/// The `key=value` fields of a ready line.
fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl NodeProcess {
    /// Starts `program` with `args` and waits up to `ready_within` for its ready line.
    pub async fn spawn<I, S>(
        program: impl AsRef<OsStr>,
        args: I,
        ready_within: Duration,
    ) -> Result<NodeProcess, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let name = program.as_ref().to_string_lossy().into_owned();
        let mut child = Command::new(program.as_ref())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: name.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        let (stderr, stderr_reader) = keep_stderr(&mut child);
        let stdout = child.stdout.take();
        let ready = async {
            let mut lines = BufReader::new(stdout?).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("node ") {
                    // Keep draining stdout, so a chatty node never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Some(line);
                }
            }
            None
        };
        let line = match tokio::time::timeout(ready_within, ready).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                // stdout closed: the child is ending. Its status, and all of its stderr
                // (the reader ends at EOF), bounded in time.
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
                if let Some(reader) = stderr_reader {
                    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
                }
                return Err(ProcessError::Exited {
                    program: name,
                    status,
                    stderr: crate::store::lock(&stderr).clone(),
                });
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(ProcessError::NotReady {
                    program: name,
                    after: ready_within,
                    stderr: crate::store::lock(&stderr).clone(),
                });
            }
        };
        let fields = fields(&line);
        if !fields.contains_key("control") {
            let _ = child.start_kill();
            return Err(ProcessError::NoControl {
                program: name,
                line,
            });
        }
        let control = Control::new(fields.get("control").cloned().unwrap_or_default());
        Ok(NodeProcess {
            program: name,
            child: Some(child),
            pid,
            fields,
            stderr,
            control,
            reaped: Arc::new(tokio::sync::watch::channel(false).0),
        })
    }

    /// Resolves once the process has ended and was reaped — also after this
    /// `NodeProcess` was dropped, which kills it: how a test checks, without polling, that
    /// no node outlives it.
    pub fn exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut reaped = self.reaped.subscribe();
        async move {
            let _ = reaped.wait_for(|gone| *gone).await;
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A field of its ready line (`peer_id`, `control`, `listen`, …).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The end of what it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        crate::store::lock(&self.stderr).clone()
    }

    /// Its control API.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// `GET path` on its control API: the JSON answer, or an error with the status and
    /// the node's message.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ProcessError> {
        self.control.get(path).await
    }

    /// `POST path` on its control API, `body` (a `serde_json::Value`, or any `Serialize`) as JSON.
    pub async fn post<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value, ProcessError> {
        self.control.post(path, body).await
    }

    /// `kill -9`: no clean-up, no flush — a crash. Waits until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        self.wait().await
    }

    /// SIGTERM, then waits for it to end (a node flushes its telemetry first).
    pub async fn terminate(&mut self) -> Result<ExitStatus, ProcessError> {
        #[cfg(unix)]
        {
            // tokio's `Child::id` is `None` once the child is reaped, so the pid signalled
            // cannot be another process's that reused it.
            let sent = self
                .child
                .as_ref()
                .and_then(|child| child.id())
                .and_then(|pid| i32::try_from(pid).ok())
                .and_then(rustix::process::Pid::from_raw)
                .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
            if !matches!(sent, Some(Ok(()))) {
                if let Some(child) = &mut self.child {
                    let _ = child.start_kill();
                }
            }
        }
        #[cfg(not(unix))]
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        self.wait().await
    }

    async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        let waited = match &mut self.child {
            Some(child) => child.wait().await,
            None => Err(std::io::Error::other("the process handle was given up")),
        };
        let status = waited.map_err(|source| ProcessError::Wait {
            program: self.program.clone(),
            source,
        })?;
        let _ = self.reaped.send(true);
        Ok(status)
    }
}

/// A node's control API (HTTP/JSON) at a base URL — a child's, or a node started
/// elsewhere that a driver reaches over the network.
///
/// ```
/// use p2p_otel_testkit::process::Control;
/// let node = Control::new("http://10.0.0.2:7000/");
/// assert_eq!(node.base_url(), "http://10.0.0.2:7000");
/// ```
#[derive(Clone, Debug)]
pub struct Control {
    base: String,
    client: opentelemetry_http::hyper::HyperClient,
}

impl Control {
    /// The control API at `base_url` (`http://host:port`). Requests time out after 60 s:
    /// a `/wait` says how long it waits, and nothing else takes long.
    pub fn new(base_url: impl Into<String>) -> Self {
        Control {
            base: base_url.into().trim_end_matches('/').to_owned(),
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                Duration::from_secs(60),
                None,
            ),
        }
    }

    /// Its base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Bytes,
    ) -> Result<serde_json::Value, ProcessError> {
        let url = format!("{}{path}", self.base);
        let failed = |message: String| ProcessError::Control {
            method,
            url: url.clone(),
            message,
            answer: None,
        };
        let request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| failed(e.to_string()))?;
        let response = self
            .client
            .send_bytes(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = String::from_utf8_lossy(response.body()).into_owned();
        if !status.is_success() {
            return Err(ProcessError::Control {
                method,
                url: url.clone(),
                message: format!("{status}: {text}"),
                answer: serde_json::from_str(&text).ok(),
            });
        }
        serde_json::from_str(&text).map_err(|e| failed(format!("not JSON ({e}): {text}")))
    }

    /// `GET path`: the JSON answer, or an error with the status and the node's message.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ProcessError> {
        self.request("GET", path, Bytes::new()).await
    }

    /// `POST path`, `body` (a `serde_json::Value`, or any `Serialize`) as JSON.
    pub async fn post<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value, ProcessError> {
        let body = serde_json::to_vec(body).map_err(|e| ProcessError::Control {
            method: "POST",
            url: format!("{}{path}", self.base),
            message: format!("cannot encode the body as JSON: {e}"),
            answer: None,
        })?;
        self.request("POST", path, Bytes::from(body)).await
    }
}

impl Drop for NodeProcess {
    /// Kills the child (a test that panics drops its nodes while unwinding) and reaps it
    /// on the runtime, so [`exited`](NodeProcess::exited) resolves once it is gone.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.start_kill();
        let reaped = Arc::clone(&self.reaped);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
                let _ = reaped.send(true);
            });
        }
    }
}

/// Several node processes started together: each ready before [`spawn`](Self::spawn)
/// returns (started in parallel), driven one by one or all at once, stopped together —
/// and, like a [`NodeProcess`], killed when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), p2p_otel_testkit::process::ProcessError> {
/// use std::time::Duration;
/// use p2p_otel_testkit::process::ProcessGroup;
///
/// // Your node binary and its flags per node; a shell stands in for it here.
/// let group = ProcessGroup::spawn(
///     "sh",
///     3,
///     |i| ["-c".to_owned(), format!("echo 'node index={i} control=http://127.0.0.1:9'; exec sleep 60")],
///     Duration::from_secs(10),
/// )
/// .await?;
/// assert_eq!(group.len(), 3);
/// assert_eq!(group.node(2).and_then(|n| n.field("index")), Some("2"));
/// let pids = group.pids();
/// let still_running = group.stop(Duration::from_secs(5)).await; // SIGTERM, then kill -9
/// assert!(still_running.is_empty(), "{still_running:?} of {pids:?}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ProcessGroup {
    nodes: Vec<NodeProcess>,
}

impl ProcessGroup {
    /// Starts `count` processes of `program`, node `i` with `args(i)`, and waits up to
    /// `ready_within` for each one's ready line. If one fails, the others are killed and
    /// its error (naming the binary, quoting its stderr) is returned.
    pub async fn spawn<I, S>(
        program: impl AsRef<OsStr>,
        count: usize,
        mut args: impl FnMut(usize) -> I,
        ready_within: Duration,
    ) -> Result<ProcessGroup, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let starts = (0..count).map(|i| {
            let args: Vec<std::ffi::OsString> =
                args(i).into_iter().map(|a| a.as_ref().to_owned()).collect();
            NodeProcess::spawn(program, args, ready_within)
        });
        let nodes = futures::future::try_join_all(starts).await?;
        Ok(ProcessGroup { nodes })
    }

    /// How many processes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Process `index`.
    pub fn node(&self, index: usize) -> Option<&NodeProcess> {
        self.nodes.get(index)
    }

    /// Every process, in order.
    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    /// Every process id, in order.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(NodeProcess::pid).collect()
    }

    /// `POST path` with `body` to every process at once; the answers in order, or the
    /// first error.
    pub async fn post_all<B: serde::Serialize + Sync + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Vec<serde_json::Value>, ProcessError> {
        futures::future::try_join_all(self.nodes.iter().map(|n| n.post(path, body))).await
    }

    /// SIGTERM to every process (a node flushes its telemetry and stops), then `kill -9`
    /// to any still running after `grace`; waits until all are gone. Returns the pids
    /// that had to be killed.
    pub async fn stop(self, grace: Duration) -> Vec<u32> {
        let stops = self.nodes.into_iter().map(|mut node| async move {
            let pid = node.pid();
            match tokio::time::timeout(grace, node.terminate()).await {
                Ok(_) => None,
                Err(_) => {
                    let _ = node.kill().await;
                    Some(pid)
                }
            }
        });
        futures::future::join_all(stops)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

impl From<Vec<NodeProcess>> for ProcessGroup {
    fn from(nodes: Vec<NodeProcess>) -> Self {
        ProcessGroup { nodes }
    }
}
