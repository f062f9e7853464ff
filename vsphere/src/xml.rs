//! A small read-only XML tree for SOAP answers.
//!
//! Nouns: [`Element`] (local name, `xsi:type`, attributes, text, children, and
//! the byte span of its inner content in the source), [`Document`] (the
//! source text and the root element).
//!
//! Invariants: names are local (namespace prefixes dropped, also in
//! `xsi:type` values); text is unescaped; `inner` spans index the exact
//! source text, so any subtree can be kept losslessly as raw XML.

use std::ops::Range;
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::Error;

/// One XML element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// Local name (no prefix).
    pub name: String,
    /// `xsi:type` without prefix, when present.
    pub xsi_type: Option<String>,
    /// Other attributes (local name, unescaped value).
    pub attrs: Vec<(String, String)>,
    /// Concatenated direct text content, unescaped.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Byte range of the inner content (between the start and end tags).
    pub inner: Range<usize>,
}

/// A parsed XML document that keeps its source text.
#[derive(Clone, Debug)]
pub struct Document {
    /// The source text.
    pub src: Arc<str>,
    /// The root element.
    pub root: Element,
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rfind(':') {
        Some(i) => s[i + 1..].to_string(),
        None => s.into_owned(),
    }
}

fn start_element(e: &BytesStart<'_>) -> Result<Element, Error> {
    let mut el = Element {
        name: local(e.name().as_ref()),
        ..Element::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|err| Error::Xml(format!("bad attribute: {err}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let val = a
            .unescape_value()
            .map_err(|err| Error::Xml(format!("bad attribute value: {err}")))?
            .into_owned();
        if key.starts_with("xmlns") {
            continue;
        }
        if local(key.as_bytes()) == "type" && key.contains(':') {
            el.xsi_type = Some(local(val.as_bytes()));
        } else {
            el.attrs.push((local(key.as_bytes()), val));
        }
    }
    Ok(el)
}

impl Document {
    /// Parses a whole document.
    pub fn parse(src: &str) -> Result<Document, Error> {
        let mut reader = Reader::from_str(src);
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let before = reader.buffer_position() as usize;
            let ev = reader
                .read_event()
                .map_err(|e| Error::Xml(format!("at byte {before}: {e}")))?;
            let after = reader.buffer_position() as usize;
            match ev {
                Event::Start(e) => {
                    let mut el = start_element(&e)?;
                    el.inner = after..after;
                    stack.push(el);
                }
                Event::Empty(e) => {
                    let mut el = start_element(&e)?;
                    el.inner = after..after;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::End(_) => {
                    let mut el = stack
                        .pop()
                        .ok_or_else(|| Error::Xml("unbalanced end tag".into()))?;
                    el.inner = el.inner.start..before;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        let s = t
                            .unescape()
                            .map_err(|e| Error::Xml(format!("bad text: {e}")))?;
                        top.text.push_str(&s);
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(Error::Xml("document ends inside an element".into()));
        }
        let root = root.ok_or_else(|| Error::Xml("empty document".into()))?;
        Ok(Document {
            src: Arc::from(src),
            root,
        })
    }

    /// The raw inner XML of an element of this document.
    pub fn inner_raw(&self, el: &Element) -> &str {
        self.src.get(el.inner.clone()).unwrap_or("")
    }
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a path of child names, e.g. `["runtime", "powerState"]`.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for n in names {
            cur = cur.child(n)?;
        }
        Some(cur)
    }

    /// Trimmed text of a child.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// A child's text parsed as an integer.
    pub fn child_i64(&self, name: &str) -> Option<i64> {
        self.child_text(name).and_then(|t| t.parse().ok())
    }

    /// A child's text parsed as a boolean (`true`/`1`).
    pub fn child_bool(&self, name: &str) -> Option<bool> {
        self.child_text(name).map(|t| t == "true" || t == "1")
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Depth-first search for the first descendant (or self) with this name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_text_and_spans() {
        let src = r#"<a xmlns:xsi="x"><b xsi:type="vim25:Foo" type="VirtualMachine">vm-1</b><c>1 &amp; 2</c><d/></a>"#;
        let doc = Document::parse(src).unwrap();
        let b = doc.root.child("b").unwrap();
        assert_eq!(b.xsi_type.as_deref(), Some("Foo"));
        assert_eq!(b.attr("type"), Some("VirtualMachine"));
        assert_eq!(b.text, "vm-1");
        assert_eq!(doc.root.child_text("c"), Some("1 & 2"));
        assert!(doc.root.child("d").is_some());
        assert_eq!(doc.inner_raw(b), "vm-1");
        assert!(doc.inner_raw(&doc.root).starts_with("<b "));
        assert!(doc.inner_raw(&doc.root).ends_with("<d/>"));
    }

    #[test]
    fn rejects_truncated() {
        assert!(Document::parse("<a><b>").is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&apos;");
    }
}
