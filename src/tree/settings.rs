//! What a rendering shows and hides: sibling order, aliases for ids and peer ids,
//! redacted and hidden attributes, node names.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

/// How siblings are ordered in a rendering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildOrder {
    /// By start time, then name (the default). Right for sequential work.
    #[default]
    StartTime,
    /// By name (then content), ignoring time: for children that run concurrently, whose
    /// start order changes from run to run.
    Name,
}

/// What a rendering hides, redacts and aliases. [`Default`] holds:
///
/// - hidden keys (instrumentation noise that differs by machine or line number):
///   `busy_ns`, `idle_ns`, `thread.id`, `thread.name`, `code.file.path`,
///   `code.module.name`, `code.line.number`, `code.filepath`, `code.namespace`,
///   `code.lineno`;
/// - redacted keys (shown as `[redacted]`): any key ending in `_ms`, `_ns`, `_us`,
///   `_secs` or `_seconds`, and `dht_query_id`, `message_id`, `process.pid`, `host.name`;
/// - aliased values (shown as `[peer 1]`, `[instance 2]`…, numbered in render order, the
///   same value always getting the same alias): libp2p peer ids anywhere in a string,
///   and the values of `service.instance.id` and `peer_id`; trace and span ids inside
///   string values become the alias of that trace or span.
///
/// ```
/// use p2p_otel_testkit::tree::{ChildOrder, RenderSettings};
/// let settings = RenderSettings::default()
///     .redact_key("request_nonce")
///     .alias_key("node", "node")
///     .child_order(ChildOrder::Name);
/// # let _ = settings;
/// ```
#[derive(Clone, Debug)]
pub struct RenderSettings {
    pub(super) hidden_keys: BTreeSet<String>,
    pub(super) redacted_keys: BTreeSet<String>,
    pub(super) redacted_suffixes: Vec<String>,
    pub(super) aliased_keys: BTreeMap<String, String>,
    pub(super) alias_patterns: Vec<(Regex, String)>,
    pub(super) child_order: ChildOrder,
    pub(super) unrecorded_fields: bool,
    /// Node `i`'s ids (peer id, instance id): rendered as `[node i]`.
    pub(super) node_ids: Vec<String>,
}

const PEER_ID_PATTERN: &str =
    r"\b(?:12D3KooW|16Uiu2HA)[1-9A-HJ-NP-Za-km-z]{40,50}\b|\bQm[1-9A-HJ-NP-Za-km-z]{44}\b";

fn owned<C: FromIterator<String>>(items: &[&str]) -> C {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            hidden_keys: owned(&[
                "busy_ns",
                "idle_ns",
                "thread.id",
                "thread.name",
                "code.file.path",
                "code.module.name",
                "code.line.number",
                "code.filepath",
                "code.namespace",
                "code.lineno",
            ]),
            redacted_keys: owned(&["dht_query_id", "message_id", "process.pid", "host.name"]),
            redacted_suffixes: owned(&["_ms", "_ns", "_us", "_secs", "_seconds"]),
            aliased_keys: [("service.instance.id", "instance"), ("peer_id", "peer")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            alias_patterns: Regex::new(PEER_ID_PATTERN)
                .map(|re| vec![(re, "peer".to_owned())])
                .unwrap_or_default(),
            child_order: ChildOrder::StartTime,
            unrecorded_fields: true,
            node_ids: Vec::new(),
        }
    }
}

impl RenderSettings {
    /// Settings that hide, redact and alias nothing (ids are still aliased).
    pub fn raw() -> Self {
        RenderSettings {
            hidden_keys: BTreeSet::new(),
            redacted_keys: BTreeSet::new(),
            redacted_suffixes: Vec::new(),
            aliased_keys: BTreeMap::new(),
            alias_patterns: Vec::new(),
            child_order: ChildOrder::StartTime,
            unrecorded_fields: true,
            node_ids: Vec::new(),
        }
    }

    /// Leaves this attribute out of the rendering entirely.
    pub fn hide_key(mut self, key: impl Into<String>) -> Self {
        self.hidden_keys.insert(key.into());
        self
    }

    /// Shows this attribute again, if a default hid it.
    pub fn show_key(mut self, key: &str) -> Self {
        self.hidden_keys.remove(key);
        self
    }

    /// Shows this attribute's value as `[redacted]` (its presence still shows).
    pub fn redact_key(mut self, key: impl Into<String>) -> Self {
        self.redacted_keys.insert(key.into());
        self
    }

    /// Redacts every attribute whose key ends with `suffix`.
    pub fn redact_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.redacted_suffixes.push(suffix.into());
        self
    }

    /// Replaces each distinct value of this attribute by `[label N]`.
    pub fn alias_key(mut self, key: impl Into<String>, label: impl Into<String>) -> Self {
        self.aliased_keys.insert(key.into(), label.into());
        self
    }

    /// Replaces every match of `pattern` inside string values by `[label N]`.
    ///
    /// An invalid pattern is returned as the error, with the settings unchanged.
    pub fn alias_pattern(
        mut self,
        pattern: &str,
        label: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        self.alias_patterns
            .push((Regex::new(pattern)?, label.into()));
        Ok(self)
    }

    /// Names nodes by their ids, in node order: wherever node `i`'s id (its peer id or
    /// `service.instance.id`) appears — a resource, an attribute, text — it renders as
    /// `[node i]`, whatever order the spans come in. A mesh and per-node telemetry give
    /// these settings (`Mesh::render_settings`, `PerNode::render_settings`).
    ///
    /// An attribute whose whole value is a node's id (or any peer id) is that node, under
    /// any key: it renders as `[node i]` (or `[peer N]`), unquoted, like `peer_id`; a peer
    /// id inside longer text is replaced within the quoted text.
    ///
    /// ```
    /// use p2p_otel_testkit::tree::RenderSettings;
    /// let settings = RenderSettings::default().nodes(["12D3KooWA", "12D3KooWB"]);
    /// assert_eq!(settings.alias_text("12D3KooWB timed out"), "[node 1] timed out");
    ///
    /// let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
    /// tracing::dispatcher::with_default(&dispatch, || {
    ///     tracing::info_span!("gossip_receive", from_peer = "12D3KooWB").in_scope(|| {});
    /// });
    /// let rendered = handle.traces().render_with(&settings);
    /// assert!(rendered.contains("from_peer = [node 1]"), "{rendered}");
    /// ```
    pub fn nodes(mut self, ids: impl IntoIterator<Item = impl ToString>) -> Self {
        self.node_ids = ids.into_iter().map(|id| id.to_string()).collect();
        self
    }

    /// `text` with every node id these settings know replaced by `[node N]`.
    pub fn alias_text(&self, text: &str) -> String {
        let mut ids: Vec<(usize, &String)> = self.node_ids.iter().enumerate().collect();
        // Longer ids first, so that no id is replaced inside a longer one.
        ids.sort_by_key(|(_, id)| std::cmp::Reverse(id.len()));
        let mut out = text.to_owned();
        for (index, id) in ids {
            if !id.is_empty() {
                out = out.replace(id.as_str(), &format!("[node {index}]"));
            }
        }
        out
    }

    /// Whether to list declared fields that were never recorded (default yes). Only the
    /// in-process capture knows them: turn it off to compare a capture with what a receiver
    /// got.
    pub fn unrecorded_fields(mut self, show: bool) -> Self {
        self.unrecorded_fields = show;
        self
    }

    /// Sets how siblings are ordered.
    pub fn child_order(mut self, order: ChildOrder) -> Self {
        self.child_order = order;
        self
    }

    pub(super) fn is_redacted(&self, key: &str) -> bool {
        self.redacted_keys.contains(key)
            || self
                .redacted_suffixes
                .iter()
                .any(|suffix| key.ends_with(suffix.as_str()))
    }
}
