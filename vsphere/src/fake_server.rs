//! A scripted SOAP server on 127.0.0.1 for unit tests of client loops that
//! the simulator cannot exercise (e.g. property paging).
//!
//! Nouns: [`FakeServer`] (a thread answering each request by the SOAP
//! method named in its body, and the log of requests it saw).
//!
//! Invariants: binds 127.0.0.1 only; answers HTTP/1.1 with Content-Length;
//! unknown methods get a NotSupported fault.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A scripted server.
pub struct FakeServer {
    /// `http://127.0.0.1:PORT/sdk`.
    pub url: String,
    /// Request bodies in order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

fn method_of(body: &str) -> String {
    let b = body.find("Body>").map(|i| &body[i + 5..]).unwrap_or("");
    let start = b.find('<').map(|i| i + 1).unwrap_or(0);
    b[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

impl FakeServer {
    /// Starts a server answering `method -> response body` (full envelopes).
    pub fn start(answers: HashMap<String, String>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/sdk", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let answers = answers.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut out = stream;
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let method = method_of(&body);
                        log.lock().expect("log").push(body);
                        let (status, resp) = match answers.get(&method) {
                            Some(r) => ("200 OK", r.clone()),
                            None => (
                                "500 Internal Server Error",
                                format!("<Envelope><Body><Fault><faultcode>ServerFaultCode</faultcode><faultstring>{method} not scripted</faultstring><detail><NotSupportedFault/></detail></Fault></Body></Envelope>"),
                            ),
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=utf-8\r\nSet-Cookie: vmware_soap_session=\"fake\"; Path=/\r\nContent-Length: {}\r\n\r\n",
                            resp.len()
                        );
                        if out.write_all(head.as_bytes()).is_err()
                            || out.write_all(resp.as_bytes()).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        FakeServer { url, seen }
    }
}

/// A minimal RetrieveServiceContent answer.
pub const SERVICE_CONTENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><viewManager type="ViewManager">ViewManager</viewManager><about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 8.0.2</fullName><version>8.0.2</version><build>1</build><apiType>VirtualCenter</apiType><apiVersion>8.0.2.0</apiVersion></about><searchIndex type="SearchIndex">SearchIndex</searchIndex><sessionManager type="SessionManager">SessionManager</sessionManager></returnval></RetrieveServiceContentResponse></soapenv:Body></soapenv:Envelope>"#;

/// A Login answer.
pub const LOGIN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><LoginResponse xmlns="urn:vim25"><returnval><key>k</key><userName>u</userName><fullName>U</fullName></returnval></LoginResponse></soapenv:Body></soapenv:Envelope>"#;

/// A Logout answer.
pub const LOGOUT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><LogoutResponse xmlns="urn:vim25"></LogoutResponse></soapenv:Body></soapenv:Envelope>"#;
