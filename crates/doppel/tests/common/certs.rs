//! Certificates for the TLS tests, made per test in a temporary folder with the `openssl`
//! command (which scripts/test installs): one CA, and server and client certificates it signs.

use super::process::{assert_success, run};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Runs `openssl args...` in `dir`, which must succeed.
pub async fn openssl(dir: &Path, args: &[&str]) {
    let mut command = Command::new("openssl");
    command.current_dir(dir).args(args);
    let output = run("openssl", command).await;
    assert_success(&format!("openssl {args:?}"), &output);
}

/// A test CA in a temporary folder: `ca.pem` and `ca.key`, and every certificate it signs as
/// `NAME.pem` and `NAME.key` beside them.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub async fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("a folder for certificates");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=doppel-test-ca",
            ],
        )
        .await;
        // Extensions make the certificates X.509 v3, the only version webpki accepts.
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write server.ext");
        std::fs::write(
            dir.path().join("client.ext"),
            "extendedKeyUsage=clientAuth\n",
        )
        .expect("write client.ext");
        TestCa { dir }
    }

    /// A server certificate `name` for 127.0.0.1 and localhost, with common name `name`.
    pub async fn server(&self, name: &str) {
        self.sign(name, "server.ext").await;
    }

    /// A server certificate `name` valid only for `alt_names` (`DNS:hub.example`, `IP:...`,
    /// comma-separated), to show that clients check the name they dialled.
    pub async fn server_for(&self, name: &str, alt_names: &str) {
        let extensions = format!("{name}.ext");
        std::fs::write(
            self.dir.path().join(&extensions),
            format!("subjectAltName={alt_names}\n"),
        )
        .expect("write the extensions file");
        self.sign(name, &extensions).await;
    }

    /// A client certificate whose common name is `name` (a device id, say).
    pub async fn client(&self, name: &str) {
        self.sign(name, "client.ext").await;
    }

    /// The path of a file in the folder (`ca.pem`, `NAME.pem`, `NAME.key`).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// [`TestCa::path`] as a string, for command lines.
    pub fn file(&self, file: &str) -> String {
        self.path(file).to_str().expect("a UTF-8 path").to_owned()
    }

    /// The DER bytes of certificate `name`, as a TLS peer presents it.
    pub async fn der(&self, name: &str) -> Vec<u8> {
        let der = format!("{name}.der");
        let pem = format!("{name}.pem");
        openssl(
            self.dir.path(),
            &["x509", "-in", &pem, "-outform", "DER", "-out", &der],
        )
        .await;
        std::fs::read(self.path(&der)).expect("read the DER certificate")
    }

    async fn sign(&self, name: &str, extensions: &str) {
        let dir = self.dir.path();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subject = format!("/CN={name}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
        )
        .await;
        // `-CAcreateserial` keeps a serial file beside the CA, so every certificate gets a new
        // serial number.
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            extensions,
        ];
        openssl(dir, &sign).await;
    }
}
