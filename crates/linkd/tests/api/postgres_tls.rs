//! TLS to PostgreSQL: linkd reaches a database over the network only with
//! the server's certificate verified against the CA file the URL names
//! (`sslmode=verify-full&sslrootcert=...`, as libpq reads them). The test
//! starts a PostgreSQL of its own with SSL on, a certificate it makes, and
//! a host-based rule that refuses every connection without TLS.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::StatusCode;

use crate::helpers::*;

/// The Debian PostgreSQL server programs (initdb, pg_ctl).
fn postgres_bin() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages in /usr/lib/postgresql");
    let mut bins: Vec<PathBuf> = versions
        .filter_map(|v| Some(v.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    bins.sort();
    bins.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).unwrap();
    }

    /// A server certificate for `host` and its key, both PEM.
    fn server_cert(&self, host: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A PostgreSQL cluster in a temporary directory that accepts only TLS
/// connections (`hostssl`), stopped when dropped.
struct SslPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl SslPostgres {
    /// Starts the cluster with the certificate and key given, for `host`.
    fn start(cert_pem: &str, key_pem: &str) -> SslPostgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = SslPostgres { dir, port, bin };
        // PostgreSQL refuses to run as root: the server then runs as the
        // `postgres` account the Debian package made, owning the directory.
        cluster.chown(cluster.dir.path());
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let cert = data.join("server.crt");
        let key = data.join("server.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        // The server refuses a key others can read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        cluster.chown(&cert);
        cluster.chown(&key);
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let socket_dir = cluster.dir.path().to_str().unwrap().to_string();
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={socket_dir} \
             -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off"
        );
        cluster.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                data.to_str().unwrap(),
                "-l",
                cluster.dir.path().join("log").to_str().unwrap(),
                "-o",
                &options,
            ],
        );
        cluster
    }

    fn running_as_root() -> bool {
        std::fs::metadata("/proc/self").unwrap().uid() == 0
    }

    fn chown(&self, path: &Path) {
        if Self::running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres", path.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success(), "chown {}", path.display());
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut cmd = if Self::running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            panic!(
                "{} {args:?} failed: {}{}\n{log}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for SslPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let mut cmd = if Self::running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D", data.to_str().unwrap()])
            .output();
    }
}

/// `linkd migrate` against `url`: what it printed on failure, or `None`.
fn migrate(url: &str) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .arg("migrate")
        .env("LINKD_DATABASE_URL", url)
        .env("LINKD_LOG", "warn")
        .output()
        .unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn linkd_reaches_postgres_over_verified_tls_and_refuses_a_wrong_ca_or_host() {
    let ca = Ca::new("linkd test database CA");
    let (cert, key) = ca.server_cert("localhost");
    let cluster = SslPostgres::start(&cert, &key);
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    ca.write(&ca_file);
    let other_ca_file = files.path().join("other-ca.pem");
    Ca::new("someone else's CA").write(&other_ca_file);
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca_file.display());

    // The cluster takes no plain connection: whatever works below went
    // over TLS.
    let plain = migrate(&cluster.url("localhost", "sslmode=disable"))
        .expect("the cluster refuses connections without TLS");
    assert!(plain.contains("no encryption"), "{plain}");

    // A server for that CA and host: a device is linked over it (the
    // event listener's own connection is verified the same way).
    let db = std::sync::Arc::new(TestDatabase::Postgres {
        url: cluster.url("localhost", &verified),
        name: String::new(),
    });
    let app = spawn_on(db.clone(), Options::default()).await;
    let device = app.start_device("openid").await;
    let browser = app.signed_in_browser("tls@example.com").await;
    let page = browser.approve(&device.user_code).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let reply = app.poll(&device.device_code).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    drop(app);
    std::mem::forget(db); // a database of the test's cluster: nothing to drop

    // A certificate from another CA is refused at start-up, saying why.
    let wrong_ca = migrate(&cluster.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            other_ca_file.display()
        ),
    ))
    .expect("a certificate from an unknown CA is refused");
    assert!(
        wrong_ca.contains("certificate is not signed by a CA in the file sslrootcert names"),
        "{wrong_ca}"
    );
    assert!(!wrong_ca.contains("panicked"), "{wrong_ca}");

    // The right CA, but the certificate names another host.
    let wrong_host = migrate(&cluster.url("127.0.0.1", &verified))
        .expect("a certificate for another host name is refused");
    assert!(
        wrong_host.contains("certificate is not valid for the host name \"127.0.0.1\""),
        "{wrong_host}"
    );
}
