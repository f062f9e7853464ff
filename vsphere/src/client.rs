//! The session: service content, login, re-login, logout.
//!
//! Nouns: [`ConnectOptions`], [`ServiceContent`] and [`About`] (what
//! `RetrieveServiceContent` answers), [`Client`] (a transport plus the
//! service content and the credentials of the current session).
//!
//! Invariants: the API version of `About.apiVersion` is used in every
//! `SOAPAction` after the first call; a call that fails with
//! NotAuthenticated is retried once after a fresh login (the expired cookie
//! is dropped first); a logged-in client logs out when dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Fault, Result};
use crate::soap::{MoRef, Transport};
use crate::tls::{sha1_thumbprint, sha256_fingerprint, TlsMode};
use crate::xml::{escape, Document, Element};

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `https://host`, `https://host/sdk` or a bare host name.
    pub url: String,
    /// Certificate policy.
    pub tls: TlsMode,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// How long to wait for a task to finish.
    pub task_timeout: Duration,
}

impl ConnectOptions {
    /// Default timeouts: 5 minutes per request, 1 hour per task.
    pub fn new(url: &str, tls: TlsMode) -> ConnectOptions {
        ConnectOptions {
            url: url.to_string(),
            tls,
            timeout: Duration::from_secs(300),
            task_timeout: Duration::from_secs(3600),
        }
    }
}

/// `ServiceContent.about`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct About {
    /// Product name, e.g. "VMware vCenter Server".
    pub name: String,
    /// Full product name with version and build.
    pub full_name: String,
    /// Product version, e.g. "8.0.2".
    pub version: String,
    /// Build number.
    pub build: String,
    /// API version, e.g. "8.0.2.0".
    pub api_version: String,
    /// "VirtualCenter" or "HostAgent".
    pub api_type: String,
    /// Instance UUID of the server.
    pub instance_uuid: String,
}

/// The managed objects the client uses.
#[derive(Clone, Debug)]
pub struct ServiceContent {
    /// Root folder of the inventory.
    pub root_folder: MoRef,
    /// The PropertyCollector.
    pub property_collector: MoRef,
    /// The ViewManager (container views).
    pub view_manager: Option<MoRef>,
    /// The SearchIndex.
    pub search_index: MoRef,
    /// The SessionManager.
    pub session_manager: MoRef,
    /// Product identity.
    pub about: About,
}

fn parse_service_content(rv: &Element) -> Result<ServiceContent> {
    let mo = |name: &str| rv.child(name).and_then(MoRef::from_element);
    let need = |name: &str| {
        mo(name).ok_or_else(|| Error::Unexpected {
            method: "RetrieveServiceContent".into(),
            what: format!("no {name}"),
        })
    };
    let about = rv.child("about");
    let t = |n: &str| {
        about
            .and_then(|a| a.child_text(n))
            .unwrap_or("")
            .to_string()
    };
    Ok(ServiceContent {
        root_folder: need("rootFolder")?,
        property_collector: need("propertyCollector")?,
        view_manager: mo("viewManager"),
        search_index: need("searchIndex")?,
        session_manager: need("sessionManager")?,
        about: About {
            name: t("name"),
            full_name: t("fullName"),
            version: t("version"),
            build: t("build"),
            api_version: t("apiVersion"),
            api_type: t("apiType"),
            instance_uuid: t("instanceUuid"),
        },
    })
}

/// The logged-in user's session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserSession {
    /// Session key.
    pub key: String,
    /// User name as the server knows it.
    pub user_name: String,
    /// Full name.
    pub full_name: String,
}

/// User name and password kept for re-login; `Debug` never shows the password.
struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A connection to vCenter or ESXi.
#[derive(Debug)]
pub struct Client {
    pub(crate) t: Transport,
    pub(crate) sc: ServiceContent,
    pub(crate) task_timeout: Duration,
    creds: Mutex<Option<Credentials>>,
    logged_in: AtomicBool,
    relogins: AtomicU32,
}

impl Client {
    /// Connects and retrieves the service content (no login yet).
    pub fn connect(opts: &ConnectOptions) -> Result<Client> {
        let t = Transport::new(&opts.url, &opts.tls, opts.timeout)?;
        let this = MoRef::new("ServiceInstance", "ServiceInstance").to_xml("_this");
        let (_, resp) = t.call("RetrieveServiceContent", &this)?;
        let rv = resp.child("returnval").ok_or_else(|| Error::Unexpected {
            method: "RetrieveServiceContent".into(),
            what: "no returnval".into(),
        })?;
        let sc = parse_service_content(rv)?;
        if !sc.about.api_version.is_empty() {
            t.set_version(&sc.about.api_version);
        }
        Ok(Client {
            t,
            sc,
            task_timeout: opts.task_timeout,
            creds: Mutex::new(None),
            logged_in: AtomicBool::new(false),
            relogins: AtomicU32::new(0),
        })
    }

    /// Connects and logs in.
    pub fn login(opts: &ConnectOptions, user: &str, password: &str) -> Result<Client> {
        let c = Client::connect(opts)?;
        c.login_with(user, password)?;
        Ok(c)
    }

    /// Logs in with user and password; they are kept for one re-login when
    /// the session expires.
    pub fn login_with(&self, user: &str, password: &str) -> Result<UserSession> {
        let s = self.do_login(user, password)?;
        if let Ok(mut g) = self.creds.lock() {
            *g = Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        Ok(s)
    }

    fn do_login(&self, user: &str, password: &str) -> Result<UserSession> {
        let params = format!(
            "{}<userName>{}</userName><password>{}</password>",
            self.sc.session_manager.to_xml("_this"),
            escape(user),
            escape(password)
        );
        let (_, resp) = self.t.call("Login", &params)?;
        self.logged_in.store(true, Ordering::SeqCst);
        let rv = resp.child("returnval");
        let t = |n: &str| rv.and_then(|r| r.child_text(n)).unwrap_or("").to_string();
        Ok(UserSession {
            key: t("key"),
            user_name: t("userName"),
            full_name: t("fullName"),
        })
    }

    /// Logs out now (also done on drop).
    pub fn logout(&self) -> Result<()> {
        if !self.logged_in.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        self.t
            .call("Logout", &self.sc.session_manager.to_xml("_this"))
            .map(|_| ())
    }

    /// The service content.
    pub fn service_content(&self) -> &ServiceContent {
        &self.sc
    }

    /// Product identity.
    pub fn about(&self) -> &About {
        &self.sc.about
    }

    /// The `/sdk` URL in use.
    pub fn url(&self) -> &str {
        self.t.url()
    }

    /// The server's leaf certificate (DER), for TLS connections.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.t.peer_certificate()
    }

    /// SHA-256 fingerprint of the server certificate, `AA:BB:...`.
    pub fn certificate_sha256(&self) -> Option<String> {
        self.peer_certificate().map(|d| sha256_fingerprint(&d))
    }

    /// SHA-1 thumbprint of the server certificate, `AA:BB:...` (for VDDK).
    pub fn certificate_thumbprint(&self) -> Option<String> {
        self.peer_certificate().map(|d| sha1_thumbprint(&d))
    }

    /// How many times the client logged in again after an expired session.
    pub fn relogins(&self) -> u32 {
        self.relogins.load(Ordering::SeqCst)
    }

    /// Calls a method; on NotAuthenticated logs in again once and retries.
    pub fn call(&self, method: &str, params: &str) -> Result<(Document, Element)> {
        match self.t.call(method, params) {
            Err(e) if matches!(e.fault(), Some(Fault::NotAuthenticated)) && method != "Login" => {
                let creds = self
                    .creds
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|c| (c.user.clone(), c.password.clone())));
                let Some((user, password)) = creds else {
                    return Err(e);
                };
                log::info!("vSphere session expired during {method}; logging in again");
                self.t.clear_cookie();
                self.do_login(&user, &password)?;
                self.relogins.fetch_add(1, Ordering::SeqCst);
                self.t.call(method, params)
            }
            other => other,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Err(e) = self.logout() {
            log::debug!("logout failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_content_parses() {
        let src = r#"<returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><viewManager type="ViewManager">ViewManager</viewManager><about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 8.0.2 build-1</fullName><version>8.0.2</version><build>1</build><apiType>VirtualCenter</apiType><apiVersion>8.0.2.0</apiVersion><instanceUuid>u</instanceUuid></about><searchIndex type="SearchIndex">SearchIndex</searchIndex><sessionManager type="SessionManager">SessionManager</sessionManager></returnval>"#;
        let doc = Document::parse(src).unwrap();
        let sc = parse_service_content(&doc.root).unwrap();
        assert_eq!(sc.root_folder, MoRef::new("Folder", "group-d1"));
        assert_eq!(sc.about.api_version, "8.0.2.0");
        assert_eq!(sc.about.api_type, "VirtualCenter");
        assert!(sc.view_manager.is_some());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials {
            user: "admin".into(),
            password: "s3cret".into(),
        };
        let d = format!("{c:?}");
        assert!(d.contains("admin") && !d.contains("s3cret"), "{d}");
    }
}
