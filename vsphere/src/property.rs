//! PropertyCollector: RetrievePropertiesEx with ContinueRetrievePropertiesEx paging.
//!
//! Nouns: [`PropSpec`] (a type and the property paths wanted), [`ObjSpec`]
//! (a starting object and an optional traversal), [`ObjectContent`] (one
//! object's properties as XML elements that keep their source text),
//! [`RetrieveResult`] (one page: objects and the continuation token).
//!
//! Invariants: every page is requested until no `token` comes back, so a
//! caller always sees the whole result; a property the server could not
//! read is reported in `missing`, never silently dropped.

use std::sync::Arc;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::soap::MoRef;
use crate::xml::{escape, Element};

/// Properties to read from objects of one type.
#[derive(Clone, Debug)]
pub struct PropSpec {
    /// Managed object type.
    pub kind: String,
    /// Property paths, e.g. `runtime.powerState`.
    pub paths: Vec<String>,
}

/// Where the collector starts.
#[derive(Clone, Debug)]
pub struct ObjSpec {
    /// Start object.
    pub obj: MoRef,
    /// Skip the start object itself (true for container views).
    pub skip: bool,
    /// Traverse `path` of objects of `kind` (e.g. ContainerView.view).
    pub traverse: Option<(String, String)>,
}

/// One property value.
#[derive(Clone, Debug)]
pub struct Prop {
    /// Property path.
    pub name: String,
    /// The `<val>` element.
    pub val: Element,
    src: Arc<str>,
}

impl Prop {
    /// The exact XML inside `<val>` as the server sent it.
    pub fn raw_inner(&self) -> &str {
        self.src.get(self.val.inner.clone()).unwrap_or("")
    }
}

/// One object and its properties.
#[derive(Clone, Debug)]
pub struct ObjectContent {
    /// The object.
    pub obj: MoRef,
    /// Properties that were read.
    pub props: Vec<Prop>,
    /// Properties that could not be read: path and fault type.
    pub missing: Vec<(String, String)>,
}

impl ObjectContent {
    /// A property's value element.
    pub fn get(&self, name: &str) -> Option<&Element> {
        self.prop(name).map(|p| &p.val)
    }

    /// A property.
    pub fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }

    /// A property's trimmed text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.text.trim())
    }
}

/// One page of a RetrievePropertiesEx answer.
#[derive(Clone, Debug, Default)]
pub struct RetrieveResult {
    /// Objects of this page.
    pub objects: Vec<ObjectContent>,
    /// Token for ContinueRetrievePropertiesEx when more pages follow.
    pub token: Option<String>,
}

/// Parses a `RetrieveResult` element (`returnval`); `src` is the document's text.
pub fn parse_result(src: &Arc<str>, rv: &Element) -> RetrieveResult {
    let mut out = RetrieveResult::default();
    for o in rv.children_named("objects") {
        let Some(obj) = o.child("obj").and_then(MoRef::from_element) else {
            continue;
        };
        let mut oc = ObjectContent {
            obj,
            props: Vec::new(),
            missing: Vec::new(),
        };
        for p in o.children_named("propSet") {
            if let (Some(name), Some(val)) = (p.child_text("name"), p.child("val")) {
                oc.props.push(Prop {
                    name: name.to_string(),
                    val: val.clone(),
                    src: src.clone(),
                });
            }
        }
        for m in o.children_named("missingSet") {
            let path = m.child_text("path").unwrap_or("").to_string();
            let kind = m
                .child("fault")
                .and_then(|f| f.child("fault"))
                .and_then(|f| f.xsi_type.clone())
                .unwrap_or_else(|| "SystemError".into());
            oc.missing.push((path, kind));
        }
        out.objects.push(oc);
    }
    out.token = rv
        .child_text("token")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    out
}

/// Serializes a PropertyFilterSpec.
pub fn filter_spec_xml(props: &[PropSpec], objs: &[ObjSpec]) -> String {
    let mut s = String::from("<specSet>");
    for p in props {
        s.push_str(&format!("<propSet><type>{}</type>", escape(&p.kind)));
        if p.paths.is_empty() {
            s.push_str("<all>true</all>");
        } else {
            s.push_str("<all>false</all>");
            for path in &p.paths {
                s.push_str(&format!("<pathSet>{}</pathSet>", escape(path)));
            }
        }
        s.push_str("</propSet>");
    }
    for o in objs {
        s.push_str("<objectSet>");
        s.push_str(&o.obj.to_xml("obj"));
        s.push_str(&format!("<skip>{}</skip>", o.skip));
        if let Some((kind, path)) = &o.traverse {
            s.push_str(&format!(
                "<selectSet xsi:type=\"TraversalSpec\"><name>traverse</name><type>{}</type><path>{}</path><skip>false</skip></selectSet>",
                escape(kind),
                escape(path)
            ));
        }
        s.push_str("</objectSet>");
    }
    s.push_str("</specSet>");
    s
}

impl Client {
    /// Retrieves properties, following continuation tokens to the end.
    pub fn retrieve(&self, props: &[PropSpec], objs: &[ObjSpec]) -> Result<Vec<ObjectContent>> {
        let pc = self.sc.property_collector.to_xml("_this");
        let params = format!("{pc}{}<options></options>", filter_spec_xml(props, objs));
        let (doc, resp) = self.call("RetrievePropertiesEx", &params)?;
        let mut page = match resp.child("returnval") {
            Some(rv) => parse_result(&doc.src, rv),
            None => RetrieveResult::default(),
        };
        let mut all = std::mem::take(&mut page.objects);
        let mut pages = 1u32;
        while let Some(token) = page.token.take() {
            pages += 1;
            if pages > 1_000_000 {
                return Err(Error::Unexpected {
                    method: "ContinueRetrievePropertiesEx".into(),
                    what: "too many pages".into(),
                });
            }
            let params = format!("{pc}<token>{}</token>", escape(&token));
            let (doc, resp) = self.call("ContinueRetrievePropertiesEx", &params)?;
            page = match resp.child("returnval") {
                Some(rv) => parse_result(&doc.src, rv),
                None => RetrieveResult::default(),
            };
            all.append(&mut page.objects);
        }
        Ok(all)
    }

    /// Reads properties of one object; `None` when it does not exist.
    pub fn retrieve_one(&self, obj: &MoRef, paths: &[&str]) -> Result<Option<ObjectContent>> {
        let props = [PropSpec {
            kind: obj.kind.clone(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }];
        let objs = [ObjSpec {
            obj: obj.clone(),
            skip: false,
            traverse: None,
        }];
        match self.retrieve(&props, &objs) {
            Ok(mut v) => Ok(v.pop().filter(|oc| {
                !(oc.props.is_empty()
                    && oc.missing.iter().any(|(_, k)| k == "ManagedObjectNotFound"))
            })),
            Err(e)
                if matches!(
                    e.fault(),
                    Some(crate::error::Fault::ManagedObjectNotFound { .. })
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Objects of `kind` anywhere under the root folder, with `paths` read.
    pub fn retrieve_all(&self, kind: &str, paths: &[&str]) -> Result<Vec<ObjectContent>> {
        let vm = self
            .sc
            .view_manager
            .clone()
            .ok_or_else(|| Error::Unexpected {
                method: "CreateContainerView".into(),
                what: "server has no ViewManager".into(),
            })?;
        let params = format!(
            "{}{}<type>{}</type><recursive>true</recursive>",
            vm.to_xml("_this"),
            self.sc.root_folder.to_xml("container"),
            escape(kind)
        );
        let (_, resp) = self.call("CreateContainerView", &params)?;
        let view = resp
            .child("returnval")
            .and_then(MoRef::from_element)
            .ok_or_else(|| Error::Unexpected {
                method: "CreateContainerView".into(),
                what: "no view moref".into(),
            })?;
        let result = self.retrieve(
            &[PropSpec {
                kind: kind.to_string(),
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }],
            &[ObjSpec {
                obj: view.clone(),
                skip: true,
                traverse: Some(("ContainerView".into(), "view".into())),
            }],
        );
        if let Err(e) = self.call("DestroyView", &view.to_xml("_this")) {
            log::debug!("DestroyView {view}: {e}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Document;

    /// A first page as vCenter sends it when maxObjects cuts the result.
    const PAGE1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>3b8f0a2c-1</token><objects><obj type="VirtualMachine">vm-101</obj><propSet><name>name</name><val xsi:type="xsd:string">web-01</val></propSet><propSet><name>runtime.powerState</name><val xsi:type="VirtualMachinePowerState">poweredOn</val></propSet></objects><objects><obj type="VirtualMachine">vm-102</obj><propSet><name>name</name><val xsi:type="xsd:string">db &amp; cache</val></propSet><missingSet><path>runtime.powerState</path><fault><fault xsi:type="NoPermission"><object type="VirtualMachine">vm-102</object><privilegeId>System.Read</privilegeId></fault><localizedMessage></localizedMessage></fault></missingSet></objects></returnval></RetrievePropertiesExResponse>
</soapenv:Body>
</soapenv:Envelope>"#;

    /// The last page: no token.
    const PAGE2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="VirtualMachine">vm-103</obj><propSet><name>name</name><val xsi:type="xsd:string">mail</val></propSet></objects></returnval></ContinueRetrievePropertiesExResponse>
</soapenv:Body>
</soapenv:Envelope>"#;

    fn page(src: &str) -> RetrieveResult {
        let (doc, resp) = crate::soap::parse_response("RetrievePropertiesEx", src).unwrap();
        parse_result(&doc.src, resp.child("returnval").unwrap())
    }

    #[test]
    fn pages_carry_tokens_until_the_last() {
        let p1 = page(PAGE1);
        assert_eq!(p1.token.as_deref(), Some("3b8f0a2c-1"));
        assert_eq!(p1.objects.len(), 2);
        assert_eq!(p1.objects[0].obj, MoRef::new("VirtualMachine", "vm-101"));
        assert_eq!(p1.objects[0].text("name"), Some("web-01"));
        assert_eq!(p1.objects[0].text("runtime.powerState"), Some("poweredOn"));
        assert_eq!(p1.objects[1].text("name"), Some("db & cache"));
        assert_eq!(
            p1.objects[1].missing,
            vec![("runtime.powerState".to_string(), "NoPermission".to_string())]
        );
        let p2 = page(PAGE2);
        assert_eq!(p2.token, None);
        assert_eq!(p2.objects.len(), 1);
        assert_eq!(p2.objects[0].text("name"), Some("mail"));
    }

    #[test]
    fn raw_inner_is_exact_source() {
        let p1 = page(PAGE1);
        assert_eq!(
            p1.objects[1].prop("name").unwrap().raw_inner(),
            "db &amp; cache"
        );
    }

    #[test]
    fn spec_xml_order() {
        let s = filter_spec_xml(
            &[PropSpec {
                kind: "VirtualMachine".into(),
                paths: vec!["name".into()],
            }],
            &[ObjSpec {
                obj: MoRef::new("ContainerView", "session[1]v"),
                skip: true,
                traverse: Some(("ContainerView".into(), "view".into())),
            }],
        );
        assert!(s.starts_with("<specSet><propSet><type>VirtualMachine</type><all>false</all><pathSet>name</pathSet></propSet><objectSet><obj type=\"ContainerView\">session[1]v</obj><skip>true</skip><selectSet xsi:type=\"TraversalSpec\">"));
        let _ = Document::parse(&format!("<x xmlns:xsi=\"i\">{s}</x>")).unwrap();
    }

    #[test]
    fn retrieve_follows_tokens_to_the_last_page() {
        use crate::fake_server::{FakeServer, LOGIN, LOGOUT, SERVICE_CONTENT};
        use crate::{Client, ConnectOptions, TlsMode};
        let answers = [
            ("RetrieveServiceContent", SERVICE_CONTENT),
            ("Login", LOGIN),
            ("Logout", LOGOUT),
            ("RetrievePropertiesEx", PAGE1),
            ("ContinueRetrievePropertiesEx", PAGE2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let server = FakeServer::start(answers);
        let c =
            Client::login(&ConnectOptions::new(&server.url, TlsMode::Verify), "u", "p").unwrap();
        let all = c
            .retrieve(
                &[PropSpec {
                    kind: "VirtualMachine".into(),
                    paths: vec!["name".into()],
                }],
                &[ObjSpec {
                    obj: MoRef::new("ContainerView", "v"),
                    skip: true,
                    traverse: Some(("ContainerView".into(), "view".into())),
                }],
            )
            .unwrap();
        let names: Vec<_> = all.iter().map(|o| o.text("name").unwrap()).collect();
        assert_eq!(names, ["web-01", "db & cache", "mail"]);
        drop(c);
        let seen = server.seen.lock().unwrap().clone();
        let cont: Vec<_> = seen
            .iter()
            .filter(|b| b.contains("<ContinueRetrievePropertiesEx "))
            .collect();
        assert_eq!(cont.len(), 1);
        assert!(cont[0].contains("<token>3b8f0a2c-1</token>"));
        assert!(seen.last().unwrap().contains("<Logout "), "logout on drop");
    }
}
