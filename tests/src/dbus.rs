//! A private D-Bus session bus with an unlocked gnome-keyring (secrets component only), isolated in a temp
//! HOME, for the keyring helpers and their peer `docker-credential-secretservice`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bins;

/// The password of the test keyring.
pub const KEYRING_PASSWORD: &str = "regkit-test-keyring";

/// A running session: `dbus-daemon` plus `gnome-keyring-daemon`, both killed and reaped on drop.
pub struct Session {
    bus: Child,
    keyring: Option<Child>,
    address: String,
    env: Vec<(String, OsString)>,
    _home: TempDir,
}

impl Session {
    /// Starts the bus, then gnome-keyring with a fresh, unlocked `login` keyring as the default collection,
    /// and waits until it owns `org.freedesktop.secrets`.
    pub fn start() -> Session {
        Session::start_with(true)
    }

    /// A session bus with no Secret Service provider on it (and none activatable).
    pub fn start_without_keyring() -> Session {
        Session::start_with(false)
    }

    fn start_with(with_keyring: bool) -> Session {
        let dbus_daemon = bins::tool("dbus-daemon", "dbus");
        let gnome_keyring = bins::tool("gnome-keyring-daemon", "gnome-keyring");
        bins::tool("dbus-send", "dbus");
        let home = tempfile::tempdir().expect("temp HOME");
        let runtime = home.path().join("run");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        let mut env: Vec<(String, OsString)> = vec![
            ("HOME".into(), home.path().into()),
            ("XDG_DATA_HOME".into(), home.path().join("data").into()),
            ("XDG_CONFIG_HOME".into(), home.path().join("config").into()),
            ("XDG_CACHE_HOME".into(), home.path().join("cache").into()),
            ("XDG_RUNTIME_DIR".into(), runtime.into()),
        ];
        // Our own bus config has no service directories: nothing is ever D-Bus-activated, so no second
        // keyring daemon can race the one we start, and a bus without it really has no provider.
        let config = home.path().join("bus.conf");
        std::fs::write(&config, bus_config(home.path())).expect("write bus config");
        let mut bus = isolated(&dbus_daemon, &env)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut address = String::new();
        let read = BufReader::new(bus.stdout.take().expect("piped stdout")).read_line(&mut address);
        let address = address.trim().to_owned();
        if read.is_err() || address.is_empty() {
            let _ = bus.kill();
            let _ = bus.wait();
            panic!("dbus-daemon did not print its address");
        }
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), address.clone().into()));
        let keyring = with_keyring.then(|| match start_keyring(&gnome_keyring, &env) {
            Ok(child) => child,
            Err(e) => {
                let _ = bus.kill();
                let _ = bus.wait();
                panic!("cannot start gnome-keyring-daemon: {e}");
            }
        });
        let session = Session {
            bus,
            keyring,
            address,
            env,
            _home: home,
        };
        if with_keyring {
            session.wait_for_owner("org.freedesktop.secrets", Duration::from_secs(10));
        }
        session
    }

    /// The variables a child process needs to use this session (and nothing of the real user's).
    pub fn env(&self) -> &[(String, OsString)] {
        &self.env
    }

    /// The bus address (`unix:path=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A command for `program` that runs in this session: [`Session::env`] set, `DISPLAY` removed.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        isolated(program.as_ref(), &self.env)
    }

    /// Locks the default (`login`) collection, as a screen lock would.
    pub fn lock(&self) {
        let output = self.dbus_send(&[
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ]);
        assert!(
            output.status.success(),
            "locking the keyring failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `dbus-send --session --print-reply ARGS` in this session.
    pub fn dbus_send(&self, args: &[&str]) -> Output {
        self.command(bins::tool("dbus-send", "dbus"))
            .args(["--session", "--print-reply"])
            .args(args)
            .output()
            .expect("run dbus-send")
    }

    fn wait_for_owner(&self, name: &str, timeout: Duration) {
        let start = Instant::now();
        // A client arriving before the name is owned would make the bus activate a second keyring daemon.
        loop {
            let output = self.dbus_send(&[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{name}"),
            ]);
            if String::from_utf8_lossy(&output.stdout).contains("boolean true") {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{name} had no owner on the test bus after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for child in self.keyring.iter_mut().chain([&mut self.bus]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts gnome-keyring in the foreground (so it stays our child) and hands it the password; `--unlock`
/// creates the `login` keyring, the default collection, when there is none.
fn start_keyring(program: &Path, env: &[(String, OsString)]) -> std::io::Result<Child> {
    let mut child = isolated(program, env)
        .args(["--foreground", "--unlock", "--components=secrets"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The password is read until end of input: dropping stdin closes it.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(KEYRING_PASSWORD.as_bytes())?;
    }
    Ok(child)
}

/// A session bus that listens in `dir`, lets every client own any name and activates nothing.
fn bus_config(dir: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        dir.display()
    )
}

/// A command with `env` applied and the variables that could reach the real desktop session removed.
fn isolated(program: &Path, env: &[(String, OsString)]) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("GNOME_KEYRING_CONTROL")
        .env_remove("REGKIT_KEYRING_PLAIN_SESSION")
        .envs(env.iter().map(|(key, value)| (key, value)));
    command
}
