//! Errors of the vSphere client.
//!
//! Nouns: [`Fault`] (a vSphere fault decoded from a SOAP fault or a failed
//! task's `info.error`), [`Error`] (everything a call can fail with).
//!
//! Invariants: a fault never surfaces as an XML dump — it carries its type
//! name and the server's message; every error says whether a retry can help
//! ([`Error::retryable`]).

use crate::xml::Element;

/// A vSphere fault, by kind. Subtypes map to their family (e.g.
/// `FileNotFound` is a [`Fault::FileFault`]); `kind` in [`Error::Fault`]
/// keeps the exact type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wrong user name or password.
    InvalidLogin,
    /// The session is missing or expired.
    NotAuthenticated,
    /// The managed object does not exist (any more).
    ManagedObjectNotFound {
        /// The moref the server named, when it did.
        obj: Option<String>,
    },
    /// A datastore file problem (also a rejected CBT changeId).
    FileFault {
        /// The file the server named, when it did.
        file: Option<String>,
    },
    /// The object is in the wrong state (e.g. power state).
    InvalidState,
    /// Another task is running on the object.
    TaskInProgress,
    /// The operation is not supported by this server or object.
    NotSupported,
    /// Anything else.
    Other,
}

impl Fault {
    /// Classifies a fault type name (without namespace prefix) and its detail element.
    pub fn classify(kind: &str, detail: Option<&Element>) -> Fault {
        let text = |n: &str| detail.and_then(|d| d.child_text(n)).map(str::to_string);
        match kind {
            "InvalidLogin" | "InvalidPassword" | "PasswordExpired" => Fault::InvalidLogin,
            "NotAuthenticated" => Fault::NotAuthenticated,
            "ManagedObjectNotFound" => Fault::ManagedObjectNotFound { obj: text("obj") },
            "FileFault"
            | "FileNotFound"
            | "CannotCreateFile"
            | "CannotDeleteFile"
            | "CannotAccessFile"
            | "FileAlreadyExists"
            | "FileLocked"
            | "FileTooLarge"
            | "FileNotWritable"
            | "FileBackedPortNotSupported"
            | "NotADirectory"
            | "NotAFile"
            | "TooManyConcurrentNativeClones"
            | "IncorrectFileType"
            | "FileNameTooLong"
            | "CannotCreateFileFault" => Fault::FileFault { file: text("file") },
            "InvalidState"
            | "InvalidPowerState"
            | "InvalidVmState"
            | "InvalidHostState"
            | "InvalidDatastoreState"
            | "SnapshotDisabled"
            | "InvalidSnapshotFormat"
            | "NoActiveHostInCluster"
            | "ToolsUnavailable"
            | "InvalidPowerStateFault" => Fault::InvalidState,
            "TaskInProgress" | "ConcurrentAccess" => Fault::TaskInProgress,
            "NotSupported" | "NotImplemented" | "MethodNotFound" => Fault::NotSupported,
            _ => Fault::Other,
        }
    }
}

/// An error of the vSphere client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered a fault.
    #[error("{method}: vSphere fault {kind}: {message}")]
    Fault {
        /// The SOAP method or task that failed.
        method: String,
        /// The fault family.
        fault: Fault,
        /// The exact fault type name.
        kind: String,
        /// The server's message (faultstring or localizedMessage).
        message: String,
    },
    /// The connection or HTTP exchange failed.
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP status without a SOAP fault.
    #[error("{method}: HTTP status {status} from {url}: {snippet}")]
    Status {
        /// The SOAP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body, for diagnosis.
        snippet: String,
    },
    /// The server certificate does not have the pinned fingerprint.
    #[error(
        "server certificate SHA-256 fingerprint {actual} does not match the pinned {expected}"
    )]
    CertificateMismatch {
        /// The pinned fingerprint.
        expected: String,
        /// The server's fingerprint.
        actual: String,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate).
    #[error("TLS connection to {url} failed: {message}")]
    Tls {
        /// The URL requested.
        url: String,
        /// What rustls reported.
        message: String,
    },
    /// Bad TLS or connection settings.
    #[error("invalid connection settings: {0}")]
    Config(String),
    /// Malformed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Well-formed XML that does not have the expected shape.
    #[error("{method}: unexpected answer: {what}")]
    Unexpected {
        /// The SOAP method.
        method: String,
        /// What was wrong.
        what: String,
    },
    /// A lookup found nothing.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// No virtual machine matches a `--vm` selector (also: a moref of
    /// another type).
    #[error("no VM with {selector}")]
    VmNotFound {
        /// The selector, e.g. `name "web-01"` or `moref vm-42`.
        selector: String,
    },
    /// Several virtual machines match a `--vm` selector (a repeated name, a
    /// BIOS UUID shared by clones, a bare UUID that is one VM's BIOS UUID and
    /// another's instance UUID).
    #[error(
        "{selector} matches {} VMs: {}; select one by moref or inventory path",
        candidates.len(),
        candidates.join(", ")
    )]
    VmAmbiguous {
        /// The selector.
        selector: String,
        /// Every match, sorted by moref: `vm-42 (/DC0/vm/folder/web-01)`.
        candidates: Vec<String>,
    },
    /// Waiting for a task took too long.
    #[error("task {task} ({what}) did not finish within {secs} s")]
    Timeout {
        /// The task moref.
        task: String,
        /// What the task does.
        what: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// A QueryChangedDiskAreas answer broke the protocol's invariants.
    #[error("QueryChangedDiskAreas for disk {device_key}: {what}")]
    ChangedAreas {
        /// The disk's device key.
        device_key: i32,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    /// Whether retrying the same operation (possibly after re-login) may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Fault { fault, .. } => matches!(
                fault,
                Fault::NotAuthenticated | Fault::TaskInProgress | Fault::InvalidState
            ),
            Error::Http { source, .. } => {
                source.is_timeout()
                    || source.is_connect()
                    || source.is_request()
                    || source.is_body()
            }
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::Timeout { .. } => true,
            Error::CertificateMismatch { .. }
            | Error::Tls { .. }
            | Error::Config(_)
            | Error::Xml(_)
            | Error::Unexpected { .. }
            | Error::NotFound { .. }
            | Error::VmNotFound { .. }
            | Error::VmAmbiguous { .. }
            | Error::ChangedAreas { .. } => false,
        }
    }

    /// The fault family when this is a vSphere fault.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_families() {
        assert_eq!(Fault::classify("InvalidLogin", None), Fault::InvalidLogin);
        assert_eq!(
            Fault::classify("FileNotFound", None),
            Fault::FileFault { file: None }
        );
        assert_eq!(
            Fault::classify("InvalidPowerState", None),
            Fault::InvalidState
        );
        assert_eq!(Fault::classify("NotSupported", None), Fault::NotSupported);
        assert_eq!(
            Fault::classify("TaskInProgress", None),
            Fault::TaskInProgress
        );
        assert_eq!(Fault::classify("SystemError", None), Fault::Other);
    }

    #[test]
    fn retryable_only_when_it_can_help() {
        let f = |fault: Fault| Error::Fault {
            method: "M".into(),
            fault,
            kind: "K".into(),
            message: String::new(),
        };
        assert!(f(Fault::TaskInProgress).retryable());
        assert!(f(Fault::NotAuthenticated).retryable());
        assert!(!f(Fault::InvalidLogin).retryable());
        assert!(!f(Fault::FileFault { file: None }).retryable());
        assert!(!f(Fault::ManagedObjectNotFound { obj: None }).retryable());
        assert!(!f(Fault::NotSupported).retryable());
        assert!(!Error::NotFound { what: "x".into() }.retryable());
        assert!(!Error::VmNotFound {
            selector: "moref vm-1".into()
        }
        .retryable());
    }

    #[test]
    fn vm_errors_name_the_selector_and_every_candidate() {
        let e = Error::VmAmbiguous {
            selector: "name \"twin\"".into(),
            candidates: vec!["vm-1 (/DC0/vm/twin)".into(), "vm-2 (/DC1/vm/twin)".into()],
        };
        assert_eq!(
            e.to_string(),
            "name \"twin\" matches 2 VMs: vm-1 (/DC0/vm/twin), vm-2 (/DC1/vm/twin); \
             select one by moref or inventory path"
        );
        assert!(!e.retryable());
        let e = Error::VmNotFound {
            selector: "moref vm-9".into(),
        };
        assert_eq!(e.to_string(), "no VM with moref vm-9");
    }
}
