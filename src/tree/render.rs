//! Text rendering of a [`Normalized`] trace set: one deterministic tree per trace.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::normalized::{Normalized, NormalizedSpan, NormalizedValue};
use crate::model::{SpanKind, StatusCode};

/// What every span line may mention, decided once for the whole rendering.
struct Context {
    show_resource: bool,
    show_scope: bool,
}

pub(super) fn render(normalized: &Normalized) -> String {
    let mut out = String::new();
    let trivial = |attrs: &BTreeMap<String, NormalizedValue>| attrs.is_empty();
    let resources_worth_showing = normalized.resources.len() > 1
        || normalized
            .resources
            .iter()
            .any(|resource| !trivial(&resource.attributes));
    if resources_worth_showing {
        for resource in &normalized.resources {
            let _ = writeln!(out, "{} {}", resource.alias, inline(&resource.attributes));
        }
    }
    let scopes_worth_showing = normalized.scopes.len() > 1
        || normalized
            .scopes
            .iter()
            .any(|scope| !scope.name.is_empty() || !scope.version.is_empty());
    if scopes_worth_showing {
        for scope in &normalized.scopes {
            let _ = writeln!(out, "{} {:?} {:?}", scope.alias, scope.name, scope.version);
        }
    }
    if normalized.duplicates > 0 {
        let _ = writeln!(out, "duplicates dropped: {}", normalized.duplicates);
    }
    let context = Context {
        show_resource: normalized.resources.len() > 1,
        show_scope: normalized.scopes.len() > 1,
    };
    for trace in &normalized.traces {
        if trace.orphans.is_empty() {
            let _ = writeln!(out, "{}", trace.alias);
        } else {
            let _ = writeln!(
                out,
                "{} (incomplete: {} orphan subtree(s))",
                trace.alias,
                trace.orphans.len()
            );
        }
        let count = trace.roots.len();
        for (i, root) in trace.roots.iter().enumerate() {
            span(&mut out, &context, root, "", i + 1 == count);
        }
        for orphan in &trace.orphans {
            let _ = writeln!(out, "  parent {} missing:", orphan.missing_parent);
            span(&mut out, &context, &orphan.span, "  ", true);
        }
    }
    out
}

fn inline(attributes: &BTreeMap<String, NormalizedValue>) -> String {
    let parts: Vec<String> = attributes
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

fn span(out: &mut String, context: &Context, node: &NormalizedSpan, prefix: &str, last: bool) {
    let mut header = node.name.clone();
    if let Some(alias) = &node.alias {
        let _ = write!(header, " [{alias}]");
    }
    if node.kind != SpanKind::Internal {
        let _ = write!(header, " kind={}", node.kind);
    }
    match node.status {
        StatusCode::Unset => {}
        StatusCode::Ok => header.push_str(" status=ok"),
        StatusCode::Error if node.status_message.is_empty() => header.push_str(" status=error"),
        StatusCode::Error => {
            let _ = write!(header, " status=error {:?}", node.status_message);
        }
    }
    if context.show_resource {
        let _ = write!(header, " @{}", node.resource);
    }
    if context.show_scope {
        let _ = write!(header, " ({})", node.scope);
    }
    if node.remote_parent {
        header.push_str(" (remote parent)");
    }
    if node.open {
        header.push_str(" (open)");
    }
    let _ = writeln!(out, "{prefix}{}{header}", if last { "└─ " } else { "├─ " });

    let below = format!("{prefix}{}", if last { "   " } else { "│  " });
    let details = format!(
        "{below}{}",
        if node.children.is_empty() {
            "  "
        } else {
            "│ "
        }
    );
    for (key, value) in &node.attributes {
        let _ = writeln!(out, "{details}{key} = {value}");
    }
    if !node.unrecorded_fields.is_empty() {
        let _ = writeln!(
            out,
            "{details}! declared but never recorded: {}",
            node.unrecorded_fields.join(", ")
        );
    }
    for event in &node.events {
        let _ = writeln!(
            out,
            "{details}event {:?} {}",
            event.name,
            inline(&event.attributes)
        );
    }
    for link in &node.links {
        let _ = writeln!(out, "{details}link -> {link}");
    }
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        span(out, context, child, &below, i + 1 == count);
    }
}
