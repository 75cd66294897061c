//! A real private registry for tests: Debian's `docker-registry` (the CNCF distribution
//! registry) on 127.0.0.1 with one htpasswd user, the test image pushed to it and removed from
//! the daemon so that deployments must pull it. Everything — the process, its storage, the
//! pushed tags — is removed on drop, pass or fail. `.ci/run` installs the packages.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::docker::IMAGE;

pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub user: String,
    pub password: String,
    dir: tempfile::TempDir,
    pushed: Vec<String>,
}

fn run(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("run a registry helper");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Registry {
    /// Starts a registry that lets only `user` with `password` in.
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", user, password]));
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: keel-test\n    path: {htpasswd}\n",
            data = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is required for these tests (.ci/run installs it)");
        let registry = Self {
            child,
            addr,
            user: user.to_owned(),
            password: password.to_owned(),
            dir,
            pushed: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start on {}",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// A Docker config file (`config.json`) with this registry's credentials.
    pub fn config_json(&self, password: &str) -> String {
        use base64::Engine;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", self.user));
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, self.addr)
    }

    /// Pushes the test image as `<addr>/keel-test/busybox:<tag>` and removes that tag from the
    /// daemon, so a deployment of it has to pull.
    pub fn push(&mut self, tag: &str) -> String {
        let image = format!("{}/keel-test/busybox:{tag}", self.addr);
        let login_dir = self.dir.path().join("client");
        std::fs::create_dir_all(&login_dir).unwrap();
        std::fs::write(
            login_dir.join("config.json"),
            self.config_json(&self.password),
        )
        .unwrap();
        run(Command::new("docker").args(["tag", IMAGE, &image]));
        self.pushed.push(image.clone());
        run(Command::new("docker")
            .env("DOCKER_CONFIG", &login_dir)
            .args(["push", &image]));
        run(Command::new("docker").args(["rmi", &image]));
        image
    }

    /// Stops the registry process (SIGSTOP): the daemon's requests hang until `resume`.
    pub fn pause(&self) {
        run(Command::new("kill").args(["-STOP", &self.child.id().to_string()]));
    }

    pub fn resume(&self) {
        run(Command::new("kill").args(["-CONT", &self.child.id().to_string()]));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file under the registry's temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for image in &self.pushed {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}
