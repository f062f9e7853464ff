//! SOAP envelopes and the HTTP transport for vim25.
//!
//! Nouns: [`MoRef`] (managed object reference: type + value),
//! [`Transport`] (one HTTP client, the endpoint URL, the API version used in
//! `SOAPAction: urn:vim25/<version>`, the session cookie, the TLS leaf seen).
//!
//! Invariants: every request body is `<Method xmlns="urn:vim25">` inside a
//! SOAP 1.1 envelope; a SOAP fault becomes [`Error::Fault`] with the fault's
//! type (from `detail/*/@xsi:type`, else the detail element's name minus
//! `Fault`) and the server's `faultstring` — never the XML itself; the
//! session cookie is managed here (not by a cookie jar) so an expired one can
//! be dropped before logging in again.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Fault, Result};
use crate::tls::{client_config, CertSeen, TlsMode};
use crate::xml::{escape, Document, Element};

/// A managed object reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    /// Managed object type, e.g. `VirtualMachine`.
    pub kind: String,
    /// Server-assigned id, e.g. `vm-42`.
    pub value: String,
}

impl MoRef {
    /// Builds a reference.
    pub fn new(kind: &str, value: &str) -> MoRef {
        MoRef {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }

    /// Reads a reference from an element with a `type` attribute.
    pub fn from_element(el: &Element) -> Option<MoRef> {
        let kind = el.attr("type")?;
        let value = el.text.trim();
        if value.is_empty() {
            return None;
        }
        Some(MoRef::new(kind, value))
    }

    /// Serializes as `<tag type="Kind">value</tag>`.
    pub fn to_xml(&self, tag: &str) -> String {
        format!(
            "<{tag} type=\"{}\">{}</{tag}>",
            escape(&self.kind),
            escape(&self.value)
        )
    }
}

impl std::fmt::Display for MoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.value)
    }
}

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
    r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#
);
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

/// Wraps a method's parameters (already XML) in a SOAP envelope.
pub fn envelope(method: &str, params: &str) -> String {
    format!("{ENVELOPE_OPEN}<{method} xmlns=\"urn:vim25\">{params}</{method}>{ENVELOPE_CLOSE}")
}

/// Decodes a SOAP fault element (`Envelope/Body/Fault`) into an error.
pub fn fault_from_element(method: &str, fault: &Element) -> Error {
    let message = fault.child_text("faultstring").unwrap_or("").to_string();
    let detail = fault.child("detail").and_then(|d| d.children.first());
    let kind = detail
        .map(|d| {
            d.xsi_type
                .clone()
                .unwrap_or_else(|| d.name.strip_suffix("Fault").unwrap_or(&d.name).to_string())
        })
        .unwrap_or_else(|| "SystemError".to_string());
    Error::Fault {
        method: method.to_string(),
        fault: Fault::classify(&kind, detail),
        message: if message.is_empty() {
            kind.clone()
        } else {
            message
        },
        kind,
    }
}

/// Decodes a `LocalizedMethodFault` (a failed task's `info.error`).
pub fn localized_fault(method: &str, error: &Element) -> Error {
    let fault = error.child("fault");
    let kind = fault
        .and_then(|f| f.xsi_type.clone())
        .unwrap_or_else(|| "SystemError".to_string());
    let mut message = error
        .child_text("localizedMessage")
        .unwrap_or("")
        .to_string();
    if message.is_empty() {
        message = fault
            .and_then(|f| f.path(&["faultMessage", "message"]))
            .map(|m| m.text.trim().to_string())
            .unwrap_or_else(|| kind.clone());
    }
    Error::Fault {
        method: method.to_string(),
        fault: Fault::classify(&kind, fault),
        kind,
        message,
    }
}

/// Parses an answer: the method's response element (`<MethodResponse>`) or the fault.
pub fn parse_response(method: &str, body: &str) -> Result<(Document, Element)> {
    let doc = Document::parse(body)?;
    let b = doc.root.child("Body").ok_or_else(|| Error::Unexpected {
        method: method.to_string(),
        what: "no SOAP Body".into(),
    })?;
    if let Some(f) = b.child("Fault") {
        return Err(fault_from_element(method, f));
    }
    let resp = b
        .children
        .first()
        .cloned()
        .ok_or_else(|| Error::Unexpected {
            method: method.to_string(),
            what: "empty SOAP Body".into(),
        })?;
    Ok((doc, resp))
}

/// One HTTP connection to the SOAP endpoint.
#[derive(Debug)]
pub struct Transport {
    http: reqwest::blocking::Client,
    url: String,
    version: Mutex<String>,
    cookie: Mutex<Option<String>>,
    seen: CertSeen,
    tls_mode: TlsMode,
}

/// Normalizes a server address to its `/sdk` endpoint: `host`, `https://host`
/// and `https://host/sdk` all mean `https://host/sdk`.
pub fn sdk_url(url: &str) -> Result<String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let parsed = reqwest::Url::parse(&with_scheme)
        .map_err(|e| Error::Config(format!("bad vCenter URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "bad vCenter URL {url:?}: scheme must be https"
        )));
    }
    let mut parsed = parsed;
    if parsed.path().is_empty() || parsed.path() == "/" {
        parsed.set_path("/sdk");
    }
    Ok(parsed.to_string())
}

impl Transport {
    /// Builds the transport; no request is sent yet.
    pub fn new(url: &str, tls: &TlsMode, timeout: Duration) -> Result<Transport> {
        let url = sdk_url(url)?;
        let seen = CertSeen::default();
        let config = client_config(tls, &seen)?;
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Transport {
            http,
            url,
            version: Mutex::new("6.7".to_string()),
            cookie: Mutex::new(None),
            seen,
            tls_mode: tls.clone(),
        })
    }

    /// The `/sdk` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's leaf certificate (DER), once a TLS handshake happened.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.seen.der()
    }

    /// Sets the API version sent in SOAPAction.
    pub fn set_version(&self, v: &str) {
        if let Ok(mut g) = self.version.lock() {
            *g = v.to_string();
        }
    }

    /// Forgets the session cookie.
    pub fn clear_cookie(&self) {
        if let Ok(mut g) = self.cookie.lock() {
            *g = None;
        }
    }

    /// Whether a session cookie is held.
    pub fn has_cookie(&self) -> bool {
        self.cookie.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Sends one SOAP call and returns the parsed response element.
    pub fn call(&self, method: &str, params: &str) -> Result<(Document, Element)> {
        let body = envelope(method, params);
        let version = self.version.lock().map(|g| g.clone()).unwrap_or_default();
        let mut req = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("urn:vim25/{version}"))
            .body(body);
        if let Some(c) = self.cookie.lock().ok().and_then(|g| g.clone()) {
            req = req.header("Cookie", c);
        }
        log::debug!("vsphere call {method}");
        let resp = req.send().map_err(|e| self.http_error(e))?;
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Ok(s) = v.to_str() {
                let pair = s.split(';').next().unwrap_or("").trim();
                if pair.starts_with("vmware_soap_session=") {
                    if let Ok(mut g) = self.cookie.lock() {
                        *g = Some(pair.to_string());
                    }
                }
            }
        }
        let status = resp.status();
        let text = resp.text().map_err(|e| self.http_error(e))?;
        match parse_response(method, &text) {
            Err(Error::Xml(_)) | Err(Error::Unexpected { .. }) if !status.is_success() => {
                Err(Error::Status {
                    method: method.to_string(),
                    url: self.url.clone(),
                    status: status.as_u16(),
                    snippet: text.chars().take(200).collect(),
                })
            }
            other => other,
        }
    }

    fn http_error(&self, e: reqwest::Error) -> Error {
        if let TlsMode::Pinned(want) = &self.tls_mode {
            if let Some(der) = self.seen.der() {
                let actual = crate::tls::sha256_fingerprint(&der);
                let expected = crate::tls::colon_hex(want);
                if actual != expected {
                    return Error::CertificateMismatch { expected, actual };
                }
            }
        }
        if let Some(message) = tls_failure(&e) {
            return Error::Tls {
                url: self.url.clone(),
                message,
            };
        }
        Error::Http {
            url: self.url.clone(),
            source: e,
        }
    }
}

/// The rustls error somewhere in an error's source chain, as text
/// (`io::Error` wrappers are looked into, not only their `source()`).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r.to_string());
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        let inner: &(dyn std::error::Error + 'static) = inner;
        if let Some(m) = tls_failure(inner) {
            return Some(m);
        }
    }
    e.source().and_then(tls_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_is_typed_not_xml() {
        let body = r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Cannot complete login due to an incorrect user name or password.</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let err = parse_response("Login", body).unwrap_err();
        match &err {
            Error::Fault {
                fault,
                kind,
                message,
                ..
            } => {
                assert_eq!(fault, &Fault::InvalidLogin);
                assert_eq!(kind, "InvalidLogin");
                assert!(message.contains("incorrect user name"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.to_string().contains('<'));
        assert!(!err.retryable());
    }

    #[test]
    fn file_fault_names_its_file() {
        let body = r#"<Envelope><Body><Fault><faultcode>ServerFaultCode</faultcode><faultstring>bad changeId</faultstring><detail><FileFaultFault type="FileFault"><file>[ds] vm/disk.vmdk</file></FileFaultFault></detail></Fault></Body></Envelope>"#;
        let err = parse_response("QueryChangedDiskAreas", body).unwrap_err();
        assert_eq!(
            err.fault(),
            Some(&Fault::FileFault {
                file: Some("[ds] vm/disk.vmdk".into())
            })
        );
    }

    #[test]
    fn urls_normalize_to_sdk() {
        assert_eq!(
            sdk_url("vc.example.com").unwrap(),
            "https://vc.example.com/sdk"
        );
        assert_eq!(sdk_url("https://vc:8443/").unwrap(), "https://vc:8443/sdk");
        assert_eq!(
            sdk_url("http://127.0.0.1:1/sdk").unwrap(),
            "http://127.0.0.1:1/sdk"
        );
        assert!(sdk_url("ftp://x").is_err());
    }

    #[test]
    fn envelope_uses_vim25_namespace() {
        let e = envelope(
            "Logout",
            &MoRef::new("SessionManager", "SessionManager").to_xml("_this"),
        );
        assert!(e.contains(r#"<Logout xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this></Logout>"#));
    }
}
