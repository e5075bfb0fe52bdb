//! From the command line's TLS flags to [`TlsPaths`], and the `kvstore-server certs`
//! subcommand. Kept beside the TLS module so the main flag parser only forwards.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::TlsPaths;

/// The TLS flags as given.
#[derive(Debug, Default, Clone)]
pub struct TlsFlags {
    /// `--cert`.
    pub cert: Option<PathBuf>,
    /// `--key`.
    pub key: Option<PathBuf>,
    /// `--ca`.
    pub ca: Option<PathBuf>,
    /// `--client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--peer-cert`.
    pub peer_cert: Option<PathBuf>,
    /// `--peer-key`.
    pub peer_key: Option<PathBuf>,
    /// `--peer-ca`.
    pub peer_ca: Option<PathBuf>,
}

impl TlsFlags {
    /// `None` when no TLS flag is given; the paths when the set is complete; otherwise which
    /// flags are missing.
    pub fn into_paths(self) -> Result<Option<TlsPaths>, String> {
        let required = [
            ("--cert", &self.cert),
            ("--key", &self.key),
            ("--peer-cert", &self.peer_cert),
            ("--peer-key", &self.peer_key),
            ("--peer-ca", &self.peer_ca),
        ];
        let any =
            required.iter().any(|(_, v)| v.is_some()) || self.ca.is_some() || self.client_cert_auth;
        if !any {
            return Ok(None);
        }
        let missing: Vec<&str> = required
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(f, _)| *f)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "TLS needs {} too: the node's one port serves clients and peers, so with TLS it \
                 needs its serving certificate (--cert/--key) and its peer certificate and CA \
                 (--peer-cert/--peer-key/--peer-ca; `kvstore-server certs` makes them all)",
                missing.join(", ")
            ));
        }
        if self.client_cert_auth && self.ca.is_none() {
            return Err(
                "--client-cert-auth needs --ca (the CA client certificates must chain to)".into(),
            );
        }
        Ok(Some(TlsPaths {
            cert: self.cert.unwrap_or_default(),
            key: self.key.unwrap_or_default(),
            ca: self.ca,
            client_cert_auth: self.client_cert_auth,
            peer_cert: self.peer_cert.unwrap_or_default(),
            peer_key: self.peer_key.unwrap_or_default(),
            peer_ca: self.peer_ca.unwrap_or_default(),
        }))
    }
}

/// Writes the certificates of a TLS test or small production cluster: a cluster CA, a
/// certificate per node, a client CA and a client certificate.
#[derive(Debug, Parser)]
#[command(name = "kvstore-server certs", bin_name = "kvstore-server certs")]
pub struct CertsArgs {
    /// Directory to write into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Node certificates to make (`node-1` .. `node-N`).
    #[arg(long, value_name = "N")]
    pub nodes: u32,
    /// Extra host name or IP address in every node certificate (repeatable), for nodes
    /// reached by a name other than localhost.
    #[arg(long, value_name = "HOST")]
    pub host: Vec<String>,
}

/// `kvstore-server certs ...` (`args` starts with the program name, then `certs`).
pub fn certs_main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.len() > 1 {
        args.remove(1); // "certs"
    }
    let a = match CertsArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if a.nodes == 0 || a.nodes > 1000 {
        eprintln!(
            "kvstore-server certs: --nodes must be in 1..=1000, got {}",
            a.nodes
        );
        return ExitCode::from(2);
    }
    match super::certs::write_cluster(&a.out, a.nodes, &a.host) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            let d = a.out.display();
            println!(
                "\nnode i:  kvstore-server --cert {d}/node-i.pem --key {d}/node-i.key \
                 --peer-cert {d}/node-i.pem --peer-key {d}/node-i.key --peer-ca {d}/ca.pem \
                 [--ca {d}/client-ca.pem --client-cert-auth]\nclients: kv --ca {d}/ca.pem \
                 [--cert {d}/client.pem --key {d}/client.key]"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kvstore-server certs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_come_as_a_set() {
        assert_eq!(TlsFlags::default().into_paths(), Ok(None));
        let some = TlsFlags {
            cert: Some("c.pem".into()),
            key: Some("c.key".into()),
            ..Default::default()
        };
        let e = some.clone().into_paths().unwrap_err();
        assert!(e.contains("--peer-cert, --peer-key, --peer-ca"), "{e}");
        let full = TlsFlags {
            peer_cert: Some("p.pem".into()),
            peer_key: Some("p.key".into()),
            peer_ca: Some("ca.pem".into()),
            ..some
        };
        assert!(full.clone().into_paths().unwrap().is_some());
        let e = TlsFlags {
            client_cert_auth: true,
            ..full
        }
        .into_paths()
        .unwrap_err();
        assert!(e.contains("--client-cert-auth needs --ca"), "{e}");
    }
}
