//! The YAML of a registry file as written, in both of Weaver's formats: `groups:` and
//! `file_format: definition/2`. Unknown fields are refused (a typo such as `span_knd`
//! must not pass silently); fields Weaver knows but checking does not need are accepted
//! and ignored (the fields typed `IgnoredAny`, never read: hence `dead_code` allowed).
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

/// One registry file, either format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistryFile {
    /// `definition/2` for the newer format; absent for `groups:` files.
    pub file_format: Option<String>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub attributes: Vec<AttributeEntry>,
    #[serde(default)]
    pub attribute_groups: Vec<Group>,
    #[serde(default)]
    pub spans: Vec<V2Signal>,
    #[serde(default)]
    pub metrics: Vec<V2Signal>,
    #[serde(default)]
    pub events: Vec<V2Signal>,
    pub entities: Option<IgnoredAny>,
    pub entity_refinements: Option<IgnoredAny>,
    pub event_refinements: Option<IgnoredAny>,
    pub metric_refinements: Option<IgnoredAny>,
    pub span_refinements: Option<IgnoredAny>,
    pub imports: Option<IgnoredAny>,
}

/// A group of the `groups:` format (and a `definition/2` attribute group).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Group {
    pub id: String,
    #[serde(rename = "type")]
    pub group_type: Option<String>,
    #[serde(default)]
    pub brief: String,
    pub note: Option<IgnoredAny>,
    #[serde(default)]
    pub prefix: String,
    pub extends: Option<String>,
    pub stability: Option<String>,
    pub deprecated: Option<Yaml>,
    #[serde(default)]
    pub attributes: Vec<AttributeEntry>,
    pub span_kind: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    pub metric_name: Option<String>,
    pub instrument: Option<String>,
    pub unit: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<IgnoredAny>,
    pub body: Option<IgnoredAny>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Yaml>,
    pub entity_associations: Option<IgnoredAny>,
    pub include_groups: Option<IgnoredAny>,
    pub visibility: Option<IgnoredAny>,
}

/// A span, metric or event of the `definition/2` format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct V2Signal {
    /// A span's type (its identity; the span name when no literal `name` is given).
    #[serde(rename = "type")]
    pub signal_type: Option<String>,
    /// A metric's or event's name; for a span, a literal string is the span name (a
    /// mapping with a `note` only describes it, as in the official conventions).
    pub name: Option<Yaml>,
    pub kind: Option<String>,
    pub instrument: Option<String>,
    pub unit: Option<String>,
    /// A signal's own level: `recommended` or `opt_in` (Weaver's rule).
    pub requirement_level: Option<String>,
    pub stability: Option<String>,
    #[serde(default)]
    pub brief: String,
    pub note: Option<IgnoredAny>,
    pub deprecated: Option<Yaml>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Yaml>,
    #[serde(default)]
    pub attributes: Vec<AttributeEntry>,
    pub entity_associations: Option<IgnoredAny>,
    pub body: Option<IgnoredAny>,
}

/// One entry of an `attributes:` list: a definition (`id:` in groups, `key:` in
/// `definition/2`), a reference (`ref:`) or, in `definition/2`, a group's attributes
/// (`ref_group:`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttributeEntry {
    pub id: Option<String>,
    pub key: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub ref_group: Option<String>,
    #[serde(rename = "type")]
    pub attribute_type: Option<TypeSpec>,
    pub brief: Option<String>,
    pub note: Option<IgnoredAny>,
    pub examples: Option<IgnoredAny>,
    pub tag: Option<IgnoredAny>,
    pub requirement_level: Option<RequirementSpec>,
    pub sampling_relevant: Option<IgnoredAny>,
    pub stability: Option<String>,
    pub deprecated: Option<Yaml>,
    pub annotations: Option<IgnoredAny>,
    pub role: Option<IgnoredAny>,
    pub prefix: Option<IgnoredAny>,
}

/// `type:` — a name such as `string` or `int[]`, or an enum's members.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TypeSpec {
    Name(String),
    Enum(EnumSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnumSpec {
    pub members: Vec<EnumMember>,
    pub allow_custom_values: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnumMember {
    pub id: String,
    pub value: Yaml,
    pub brief: Option<IgnoredAny>,
    pub note: Option<IgnoredAny>,
    pub stability: Option<String>,
    pub deprecated: Option<Yaml>,
    pub annotations: Option<IgnoredAny>,
}

/// `requirement_level:` — `required`, `recommended`, `opt_in`, or a mapping such as
/// `conditionally_required: <condition>`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RequirementSpec {
    Plain(String),
    WithText(BTreeMap<String, String>),
}

/// Parses one file; the error keeps the YAML parser's line and column.
pub(super) fn parse(text: &str) -> Result<RegistryFile, serde_yaml_ng::Error> {
    // An empty file (or one of comments only) is an empty registry, as in Weaver.
    if text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---"
    }) {
        return Ok(RegistryFile::default());
    }
    serde_yaml_ng::from_str(text)
}

/// The 1-based line of the first line at or after `from` (1-based) on which `field:` has
/// `value` (quoted or not, in a list item or not).
pub(super) fn find_line(text: &str, from: usize, field: &str, value: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let line = line.trim_start().trim_start_matches("- ").trim_start();
            line.strip_prefix(field)
                .and_then(|rest| rest.trim_start().strip_prefix(':'))
                .map(|rest| rest.trim().trim_matches(|c| c == '"' || c == '\''))
                .is_some_and(|found| found == value)
        })
        .map(|(index, _)| index + 1)
}

/// [`find_line`], or `from` when no line matches.
pub(super) fn line_of(text: &str, from: usize, field: &str, value: &str) -> usize {
    find_line(text, from, field, value).unwrap_or(from.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_found_quoted_or_in_a_list_item() {
        let text = "groups:\n  - id: a\n    attributes:\n      - ref: \"x.y\"\n  - id: 'b'\n";
        assert_eq!(line_of(text, 1, "id", "a"), 2);
        assert_eq!(line_of(text, 2, "ref", "x.y"), 4);
        assert_eq!(line_of(text, 1, "id", "b"), 5);
        assert_eq!(line_of(text, 3, "id", "nowhere"), 3);
    }

    #[test]
    fn comments_only_is_an_empty_registry() {
        let file = parse("# nothing yet\n---\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(file.groups.is_empty() && file.attributes.is_empty());
    }
}
