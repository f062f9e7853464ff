//! vSphere client against the simulator: login, session expiry, TLS
//! verification, pinning and certificate fingerprints.

use std::time::Duration;

use vmkeep_tests::vcsim::{Vcsim, VcsimOptions};
use vmkeep_vsphere::{parse_fingerprint, Client, ConnectOptions, Error, Fault, TlsMode};

fn opts(url: &str, tls: TlsMode) -> ConnectOptions {
    let mut o = ConnectOptions::new(url, tls);
    o.timeout = Duration::from_secs(30);
    o.task_timeout = Duration::from_secs(60);
    o
}

#[test]
fn login_failure_is_a_typed_invalid_login() {
    let sim = Vcsim::start();
    let err = Client::login(
        &opts(&sim.url, TlsMode::Verify),
        &sim.user,
        "wrong-password",
    )
    .expect_err("a wrong password must not log in");
    assert_eq!(err.fault(), Some(&Fault::InvalidLogin), "{err:?}");
    assert!(!err.retryable());
    let text = err.to_string();
    assert!(text.contains("InvalidLogin"), "{text}");
    assert!(!text.contains('<'), "fault must not be an XML dump: {text}");

    // The right password works, and the server identity is read.
    let c = Client::login(&opts(&sim.url, TlsMode::Verify), &sim.user, &sim.password).unwrap();
    assert_eq!(c.about().api_type, "VirtualCenter");
    assert!(!c.about().api_version.is_empty());
    assert!(
        c.peer_certificate().is_none(),
        "plain http has no certificate"
    );
}

#[test]
fn expired_session_logs_in_again_once_and_retries() {
    let sim = Vcsim::start();
    let c = Client::login(&opts(&sim.url, TlsMode::Verify), &sim.user, &sim.password).unwrap();
    let before = c.list_vms().unwrap();
    assert!(!before.is_empty());
    assert_eq!(c.relogins(), 0);

    assert!(sim.expire_sessions() >= 1);
    let after = c
        .list_vms()
        .expect("the client must log in again and retry");
    assert_eq!(before, after);
    assert_eq!(c.relogins(), 1);

    // The new session keeps working without further re-logins.
    c.list_vms().unwrap();
    assert_eq!(c.relogins(), 1);
}

#[test]
fn tls_verification_pinning_and_fingerprints() {
    let sim = Vcsim::start_with(VcsimOptions {
        tls: true,
        ..Default::default()
    });
    assert!(sim.url.starts_with("https://127.0.0.1:"));
    let sha256 = sim.sha256_fingerprint.clone().expect("fingerprint");
    let sha1 = sim.sha1_thumbprint.clone().expect("thumbprint");

    // Verification is on by default: a self-signed certificate is refused.
    let err = Client::connect(&opts(&sim.url, TlsMode::Verify)).expect_err("self-signed must fail");
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(!err.retryable());

    // Pinning the right SHA-256 fingerprint is accepted (any spelling).
    let pin = parse_fingerprint(&sha256.replace(':', "").to_lowercase()).unwrap();
    let c = Client::login(
        &opts(&sim.url, TlsMode::Pinned(pin)),
        &sim.user,
        &sim.password,
    )
    .expect("pinned certificate must be accepted");
    assert_eq!(c.certificate_sha256().as_deref(), Some(sha256.as_str()));
    assert_eq!(c.certificate_thumbprint().as_deref(), Some(sha1.as_str()));
    assert_eq!(
        c.certificate_thumbprint().unwrap().len(),
        59,
        "AA:BB:... form of 20 bytes"
    );
    c.list_vms().unwrap();

    // A wrong pin is refused and says which certificate the server showed.
    let mut wrong = parse_fingerprint(&sha256).unwrap();
    wrong[0] ^= 0xff;
    let err = Client::connect(&opts(&sim.url, TlsMode::Pinned(wrong))).expect_err("wrong pin");
    match &err {
        Error::CertificateMismatch { actual, .. } => assert_eq!(actual, &sha256),
        other => panic!("expected CertificateMismatch, got {other:?}"),
    }
    assert!(!err.retryable());

    // Insecure mode connects and still reports the fingerprints.
    let c = Client::login(&opts(&sim.url, TlsMode::Insecure), &sim.user, &sim.password).unwrap();
    assert_eq!(c.certificate_thumbprint().as_deref(), Some(sha1.as_str()));
}
