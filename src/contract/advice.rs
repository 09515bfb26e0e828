//! Weaver live-check's built-in advice, judged in-process: what `weaver registry
//! live-check` says about an attribute, a metric or an event beyond the registry's own
//! rules, at Weaver's levels.
//!
//! | id | level | when |
//! |---|---|---|
//! | `missing_namespace` | improvement | an attribute key without a `.` |
//! | `invalid_format` | violation | an attribute key or metric name outside `^[a-z][a-z0-9]*([._][a-z0-9]+)*$` (template attributes exempt) |
//! | `illegal_namespace` | violation | a key whose namespace is an attribute of the registry (`service.name.x`) |
//! | `extends_namespace` | information | a key the registry lacks, under one of its namespaces |
//! | `not_stable` | improvement | an attribute, metric or event whose `stability` is not `stable` |
//! | `template_attribute` | information | a key matched by a `template[…]` attribute |
//!
//! Those are Weaver 0.25's default Rego policies (`defaults/policies/live_check_advice`)
//! and its stability advisor. [`Contract::with_advice(false)`](super::Contract::with_advice)
//! turns them off, as an empty `--advice-policies` folder does for Weaver.

use std::collections::HashSet;

use super::findings::Level;
use super::model::{AttributeDef, AttributeType};

/// The advice that is an improvement: a report's text lists it by id, with the keys it
/// concerns, not finding by finding.
pub(super) const IMPROVEMENTS: [&str; 2] = ["missing_namespace", "not_stable"];

/// One piece of advice about a sample.
#[derive(Debug, PartialEq)]
pub(super) struct Advice {
    pub id: &'static str,
    pub level: Level,
    pub message: String,
    pub context: Vec<(&'static str, String)>,
}

/// What the advice needs to know of the registry: its attribute keys and their
/// namespaces (Weaver's `advice.jq` preprocessing).
#[derive(Clone, Debug, Default)]
pub(super) struct Registry {
    /// Keys of attributes not deprecated.
    live_keys: HashSet<String>,
    /// Every key of the registry.
    keys: HashSet<String>,
    /// Every proper namespace of a key (`a` and `a.b` of `a.b.c`).
    namespaces: HashSet<String>,
}

impl Registry {
    pub(super) fn new<'a>(attributes: impl IntoIterator<Item = &'a AttributeDef>) -> Self {
        let mut registry = Registry::default();
        // Templates are apart, as in Weaver's data (`semconv_templates`): `a.b` under a
        // template `a` is an instance, not a namespace clash.
        for def in attributes
            .into_iter()
            .filter(|d| !matches!(d.attribute_type, AttributeType::Template(_)))
        {
            if def.deprecated.is_none() {
                registry.live_keys.insert(def.key.clone());
            }
            registry.keys.insert(def.key.clone());
            for namespace in namespaces(&def.key) {
                registry.namespaces.insert(namespace.to_owned());
            }
        }
        registry
    }

    /// The advice about attribute `key`, whose definition is `def` (none when the
    /// registry lacks it).
    pub(super) fn attribute(&self, key: &str, def: Option<&AttributeDef>) -> Vec<Advice> {
        let mut advice = Vec::new();
        let context = |extra: Option<(&'static str, String)>| {
            let mut context = vec![("attribute_key", key.to_owned())];
            context.extend(extra);
            context
        };
        let template = def.is_some_and(|d| matches!(d.attribute_type, AttributeType::Template(_)));
        if !key.contains('.') {
            advice.push(Advice {
                id: "missing_namespace",
                level: Level::Improvement,
                message: format!(
                    "attribute key {key} has no namespace: name it {{namespace}}.{key} (Weaver's advice)"
                ),
                context: context(None),
            });
        }
        if !template && !well_formed(key) {
            advice.push(Advice {
                id: "invalid_format",
                level: Level::Violation,
                message: format!(
                    "attribute key {key} does not match the naming rule ^[a-z][a-z0-9]*([._][a-z0-9]+)*$: use lowercase words joined by . or _"
                ),
                context: context(None),
            });
        }
        for namespace in namespaces(key).filter(|ns| self.live_keys.contains(*ns)) {
            advice.push(Advice {
                id: "illegal_namespace",
                level: Level::Violation,
                message: format!(
                    "attribute key {key} uses {namespace} as a namespace, but {namespace} is an attribute of the registry: rename one of them"
                ),
                context: context(Some(("namespace", namespace.to_owned()))),
            });
        }
        if !template && !self.keys.contains(key) {
            if let Some(namespace) = namespaces(key)
                .filter(|ns| self.namespaces.contains(*ns))
                .last()
            {
                advice.push(Advice {
                    id: "extends_namespace",
                    level: Level::Information,
                    message: format!(
                        "attribute key {key} is under the registry's namespace {namespace}"
                    ),
                    context: context(Some(("namespace", namespace.to_owned()))),
                });
            }
        }
        if let Some(def) = def {
            if template {
                advice.push(Advice {
                    id: "template_attribute",
                    level: Level::Information,
                    message: format!("attribute {key} is an instance of template {}", def.key),
                    context: context(Some(("template_name", def.key.clone()))),
                });
            }
            if let Some(stability) = unstable(def.stability.as_deref()) {
                advice.push(Advice {
                    id: "not_stable",
                    level: Level::Improvement,
                    message: format!("attribute {key} is not stable; stability = {stability}"),
                    context: context(Some(("stability", stability.to_owned()))),
                });
            }
        }
        advice
    }
}

/// The advice about a metric's name and its group's stability.
pub(super) fn metric(name: &str, stability: Option<&str>) -> Vec<Advice> {
    let mut advice = Vec::new();
    if !well_formed(name) {
        advice.push(Advice {
            id: "invalid_format",
            level: Level::Violation,
            message: format!(
                "metric name {name} does not match the naming rule ^[a-z][a-z0-9]*([._][a-z0-9]+)*$: use lowercase words joined by . or _"
            ),
            context: vec![("metric_name", name.to_owned())],
        });
    }
    advice.extend(not_stable("metric", name, stability));
    advice
}

/// The advice about an event's group stability.
pub(super) fn event(name: &str, stability: Option<&str>) -> Vec<Advice> {
    not_stable("event", name, stability).into_iter().collect()
}

/// `not_stable` about a metric or an event itself, when its group is not stable.
fn not_stable(signal: &'static str, name: &str, stability: Option<&str>) -> Option<Advice> {
    let stability = unstable(stability)?;
    let key = if signal == "metric" {
        "metric_name"
    } else {
        "event_name"
    };
    Some(Advice {
        id: "not_stable",
        level: Level::Improvement,
        message: format!("{signal} {name} is not stable; stability = {stability}"),
        context: vec![(key, name.to_owned()), ("stability", stability.to_owned())],
    })
}

/// The stability, when one is written and it is not `stable`.
fn unstable(stability: Option<&str>) -> Option<&str> {
    stability.filter(|s| *s != "stable")
}

/// `a` and `a.b` of `a.b.c`: the namespaces a key lives under, outermost first.
fn namespaces(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('.').map(move |(at, _)| &key[..at])
}

/// Whether a name matches `^[a-z][a-z0-9]*([._][a-z0-9]+)*$`.
fn well_formed(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    if !first.is_ascii_lowercase() {
        return false;
    }
    let mut after_separator = false;
    for &byte in &bytes[1..] {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => after_separator = false,
            b'.' | b'_' if !after_separator => after_separator = true,
            _ => return false,
        }
    }
    !after_separator
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(key: &str, stability: Option<&str>, deprecated: bool) -> AttributeDef {
        AttributeDef {
            key: key.into(),
            attribute_type: AttributeType::String,
            deprecated: deprecated.then(|| "gone".into()),
            stability: stability.map(Into::into),
            defined_at: "r.yaml:1".into(),
        }
    }

    fn ids(advice: &[Advice]) -> Vec<(&str, Level)> {
        advice.iter().map(|a| (a.id, a.level)).collect()
    }

    #[test]
    fn names_follow_weavers_rule() {
        for good in ["a", "peer_id", "http.request.method", "a1.b2_c3"] {
            assert!(well_formed(good), "{good}");
        }
        for bad in ["", "A", "1a", "a..b", "a._b", "a.", "peerId", "a-b", "_a"] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn each_rule_fires_at_weavers_level() {
        let known = [
            def("service.name", Some("stable"), false),
            def("service.instance.id", Some("development"), false),
            def("old", None, true),
        ];
        let registry = Registry::new(&known);
        assert_eq!(
            ids(&registry.attribute("peer_id", None)),
            [("missing_namespace", Level::Improvement)]
        );
        assert_eq!(
            ids(&registry.attribute("Peer", None)),
            [
                ("missing_namespace", Level::Improvement),
                ("invalid_format", Level::Violation)
            ]
        );
        assert_eq!(
            ids(&registry.attribute("service.name.short", None)),
            [
                ("illegal_namespace", Level::Violation),
                ("extends_namespace", Level::Information)
            ]
        );
        // A deprecated attribute's name may become a namespace.
        assert!(registry.attribute("old.new", None).is_empty());
        assert_eq!(
            ids(&registry.attribute("service.instance.id", Some(&known[1]))),
            [("not_stable", Level::Improvement)]
        );
        assert!(registry
            .attribute("service.name", Some(&known[0]))
            .is_empty());
        assert_eq!(
            ids(&metric("p2p.ops", Some("development"))),
            [("not_stable", Level::Improvement)]
        );
        assert_eq!(
            ids(&metric("P2P ops", None)),
            [("invalid_format", Level::Violation)]
        );
        assert!(event("e", Some("stable")).is_empty());
    }
}
