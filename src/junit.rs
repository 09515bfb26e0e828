//! JUnit XML, the report format CI systems read: the one writer behind the contract's
//! report ([`Report::to_junit`](crate::contract::Report::to_junit)) and the CLI's
//! validation. Text is escaped, and the characters XML 1.0 forbids (control characters
//! other than tab, line feed and carriage return — say, a terminal colour code in a
//! node's stderr — and U+FFFE, U+FFFF) are dropped, so the file always parses.
//!
//! ```
//! use p2p_otel_testkit::junit::{TestCase, TestSuite};
//!
//! let suite = TestSuite::new("checks")
//!     .case(TestCase::passed("plan", "a <b> & c"))
//!     .case(TestCase::failed("plan", "d", "went \u{1b}[31mwrong", "the details"));
//! let xml = p2p_otel_testkit::junit::document(&[suite]);
//! assert!(xml.contains(r#"<testsuite name="checks" tests="2" failures="1">"#));
//! assert!(xml.contains(r#"name="a &lt;b&gt; &amp; c"/>"#));
//! assert!(xml.contains(r#"<failure message="went [31mwrong">the details</failure>"#));
//! ```

use std::fmt::Write;
use std::time::Duration;

/// One `<testsuite>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSuite {
    /// Its name.
    pub name: String,
    /// How long it took, written as `time` in seconds when known.
    pub time: Option<Duration>,
    /// Its test cases, in order.
    pub cases: Vec<TestCase>,
}

/// One `<testcase>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestCase {
    /// Its `classname` (the group it belongs to).
    pub classname: String,
    /// Its name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<Failure>,
    /// Text kept with it (`<system-out>`), such as the evidence of a pass.
    pub system_out: Option<String>,
}

/// A test case's `<failure>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failure {
    /// The one-line `message` attribute.
    pub message: String,
    /// The element's text: the details (empty writes a self-closing element).
    pub text: String,
}

impl TestSuite {
    /// An empty suite named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        TestSuite {
            name: name.into(),
            ..TestSuite::default()
        }
    }

    /// The suite with `case` added.
    #[must_use]
    pub fn case(mut self, case: TestCase) -> Self {
        self.cases.push(case);
        self
    }

    /// How many of its cases failed.
    pub fn failures(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }

    /// The `<testsuite>` element, indented for a `<testsuites>` document.
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\"",
            escape(&self.name),
            self.cases.len(),
            self.failures()
        );
        if let Some(time) = self.time {
            let _ = write!(xml, " time=\"{:.3}\"", time.as_secs_f64());
        }
        xml.push_str(">\n");
        for case in &self.cases {
            case.write(&mut xml);
        }
        xml.push_str("  </testsuite>\n");
        xml
    }
}

impl TestCase {
    /// A passing case.
    pub fn passed(classname: impl Into<String>, name: impl Into<String>) -> Self {
        TestCase {
            classname: classname.into(),
            name: name.into(),
            ..TestCase::default()
        }
    }

    /// A failing case.
    pub fn failed(
        classname: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        TestCase {
            failure: Some(Failure {
                message: message.into(),
                text: text.into(),
            }),
            ..TestCase::passed(classname, name)
        }
    }

    /// The case with `text` as its `<system-out>`.
    #[must_use]
    pub fn with_system_out(mut self, text: impl Into<String>) -> Self {
        self.system_out = Some(text.into());
        self
    }

    fn write(&self, xml: &mut String) {
        let _ = write!(
            xml,
            "    <testcase classname=\"{}\" name=\"{}\"",
            escape(&self.classname),
            escape(&self.name)
        );
        if self.failure.is_none() && self.system_out.is_none() {
            xml.push_str("/>\n");
            return;
        }
        xml.push_str(">\n");
        if let Some(failure) = &self.failure {
            let _ = write!(
                xml,
                "      <failure message=\"{}\"",
                escape(&failure.message)
            );
            if failure.text.is_empty() {
                xml.push_str("/>\n");
            } else {
                let _ = writeln!(xml, ">{}</failure>", escape(&failure.text));
            }
        }
        if let Some(out) = &self.system_out {
            let _ = writeln!(xml, "      <system-out>{}</system-out>", escape(out));
        }
        xml.push_str("    </testcase>\n");
    }
}

/// A whole JUnit document: `<testsuites>` holding `suites`.
pub fn document(suites: &[TestSuite]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for suite in suites {
        xml.push_str(&suite.to_xml());
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// `text` escaped for XML content and double-quoted attributes, without the characters
/// XML 1.0 cannot hold (they are dropped).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn every_character_xml_forbids_is_dropped_and_the_rest_kept() {
        let forbidden: String = ('\u{0}'..='\u{1f}')
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .chain(['\u{fffe}', '\u{ffff}'])
            .collect();
        assert_eq!(escape(&format!("a{forbidden}b")), "ab");
        assert_eq!(
            escape("tab\tline\ncr\r é ✓ \u{10000}"),
            "tab\tline\ncr\r é ✓ \u{10000}"
        );
        assert_eq!(
            escape(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
