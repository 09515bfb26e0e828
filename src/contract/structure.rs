//! The extension: what Weaver's format cannot say — trace structure on span groups and
//! alerts on metric groups — written under a group's `annotations`, which Weaver keeps
//! but does not interpret.
//!
//! The syntax is documented, with an example, on the `contract` module.

use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use crate::model::SpanKind;

/// Structure rules of a span group.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Structure {
    pub root: bool,
    /// The parent must be one of these.
    pub parent: Vec<Edge>,
    pub remote_parent: bool,
    pub children: Vec<ChildRule>,
    pub events: Vec<String>,
    pub on_error: Vec<String>,
}

impl Structure {
    pub(crate) fn is_empty(&self) -> bool {
        self == &Structure::default()
    }
}

/// A span on the other end of an edge: its name and, if given, its kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Edge {
    pub span: String,
    pub kind: Option<SpanKind>,
}

/// Children of a name (and kind) a span must have.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChildRule {
    pub edge: Edge,
    pub min: usize,
    pub max: Option<usize>,
}

/// A Prometheus alert on a metric group.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Alert {
    /// The alert's name.
    pub alert: String,
    /// For a counter: the labels that mark an error; fires when their share of the
    /// increase is above `above`.
    pub error_rate: Option<std::collections::BTreeMap<String, String>>,
    /// For a histogram: fires when this quantile (0–1) is above `above`, in the metric's
    /// unit.
    pub quantile: Option<f64>,
    /// The threshold.
    pub above: f64,
    /// How long the condition must hold, in Prometheus' duration syntax.
    #[serde(rename = "for", default = "default_for")]
    pub hold_for: String,
    /// The window rates are computed over.
    #[serde(default = "default_window")]
    pub window: String,
    /// Labels the alert is computed per (summed over the others).
    #[serde(default)]
    pub by: Vec<String>,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// What the alert means, for its annotation.
    #[serde(default)]
    pub summary: String,
}

fn default_for() -> String {
    "5m".into()
}

fn default_window() -> String {
    "5m".into()
}

fn default_severity() -> String {
    "warning".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StructureSpec {
    #[serde(default)]
    root: bool,
    parent: Option<EdgeSpec>,
    #[serde(default)]
    remote_parent: bool,
    #[serde(default)]
    children: Vec<ChildSpec>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    on_error: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EdgeSpec {
    Name(String),
    Full { span: String, kind: Option<String> },
    AnyOf(Vec<EdgeSpec>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildSpec {
    span: String,
    kind: Option<String>,
    min: Option<usize>,
    max: Option<usize>,
}

fn kind(text: Option<String>) -> Result<Option<SpanKind>, String> {
    text.map(|text| {
        SpanKind::parse(&text).ok_or_else(|| {
            format!(
                "unknown span kind {text:?}: use internal, server, client, producer or consumer"
            )
        })
    })
    .transpose()
}

fn edges(spec: EdgeSpec, out: &mut Vec<Edge>) -> Result<(), String> {
    match spec {
        EdgeSpec::Name(span) => out.push(Edge { span, kind: None }),
        EdgeSpec::Full { span, kind: k } => out.push(Edge {
            span,
            kind: kind(k)?,
        }),
        EdgeSpec::AnyOf(list) => {
            for spec in list {
                edges(spec, out)?;
            }
        }
    }
    Ok(())
}

/// Reads `annotations.structure`.
pub(crate) fn structure(value: &Yaml) -> Result<Structure, String> {
    let spec: StructureSpec =
        serde_yaml_ng::from_value(value.clone()).map_err(|e| format!("structure: {e}"))?;
    if spec.root && spec.parent.is_some() {
        return Err("structure: a span cannot be a root and have a parent".into());
    }
    let children = spec
        .children
        .into_iter()
        .map(|child| {
            let min = child.min.unwrap_or(1);
            if child.max.is_some_and(|max| max < min) {
                return Err(format!(
                    "structure: child {} has max {} below min {min}",
                    child.span,
                    child.max.unwrap_or_default()
                ));
            }
            Ok(ChildRule {
                edge: Edge {
                    span: child.span,
                    kind: kind(child.kind)?,
                },
                min,
                max: child.max,
            })
        })
        .collect::<Result<_, String>>()?;
    let mut parent = Vec::new();
    if let Some(spec) = spec.parent {
        edges(spec, &mut parent)?;
    }
    Ok(Structure {
        root: spec.root,
        parent,
        remote_parent: spec.remote_parent,
        children,
        events: spec.events,
        on_error: spec.on_error,
    })
}

/// Reads `annotations.cardinality`: a map from attribute key to the most distinct values
/// it may take.
pub(crate) fn cardinality(value: &Yaml) -> Result<Vec<(String, usize)>, String> {
    let budgets: std::collections::BTreeMap<String, usize> =
        serde_yaml_ng::from_value(value.clone()).map_err(|error| {
            format!(
                "annotations.cardinality: {error}: write a map from attribute key to the most \
                 distinct values it may take, e.g. `{{operation: 20}}`"
            )
        })?;
    if let Some((key, _)) = budgets.iter().find(|(_, max)| **max == 0) {
        return Err(format!(
            "annotations.cardinality: {key}: a budget of 0 allows no value; omit the attribute \
             from the group instead"
        ));
    }
    Ok(budgets.into_iter().collect())
}

/// Reads `annotations.alerts`.
pub(crate) fn alerts(value: &Yaml) -> Result<Vec<Alert>, String> {
    let alerts: Vec<Alert> =
        serde_yaml_ng::from_value(value.clone()).map_err(|e| format!("alerts: {e}"))?;
    for alert in &alerts {
        match (&alert.error_rate, alert.quantile) {
            (Some(_), None) => {}
            (None, Some(q)) if q > 0.0 && q < 1.0 => {}
            (None, Some(q)) => {
                return Err(format!(
                    "alerts: {}: quantile {q} must be between 0 and 1",
                    alert.alert
                ))
            }
            _ => {
                return Err(format!(
                    "alerts: {}: give either error_rate (a counter) or quantile (a histogram)",
                    alert.alert
                ))
            }
        }
        if alert.alert.is_empty()
            || !alert
                .alert
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "alerts: {:?} is not a Prometheus alert name (letters, digits, _)",
                alert.alert
            ));
        }
    }
    Ok(alerts)
}
