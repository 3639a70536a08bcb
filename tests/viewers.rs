//! Headless Chromium and speedscope, for the tests that open numatrace's
//! exports in the viewers people use (numatrace's `tests/viewers.rs`, the
//! lab's `lab_stacks.rs`): speedscope's release files are served on
//! loopback and loaded in Chromium, whose DOM the tests then read. Needs
//! Debian's `chromium` and speedscope in [`SPEEDSCOPE`] (both from `cargo
//! xtask setup`); a missing one fails the test and says so.
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// Where `cargo xtask setup` installs the speedscope npm package (`npm --prefix`).
pub const SPEEDSCOPE: &str = "/var/cache/numatrace/speedscope";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Longer than any load seen (about 2 s); an alert (speedscope's import
/// error) blocks headless Chromium for ever, so a hang is a failure.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// speedscope's release files (what its page loads), after saying which version.
pub fn speedscope_release() -> PathBuf {
    let release = Path::new(SPEEDSCOPE).join("node_modules/speedscope/dist/release");
    let version = fs::read_to_string(release.join("release.txt"))
        .unwrap_or_else(|e| panic!("speedscope is needed in {} (cargo xtask setup): {e}", release.display()));
    eprintln!("viewers: {}, {}", version.lines().next().unwrap_or("speedscope"), CHROMIUM);
    release
}

/// HTML text escaping, as Chromium serialises text and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Headless Chromium, as root too (no sandbox), with nothing that reaches
/// outside the machine. Returns its stdout; fails on a non-zero exit or a hang.
pub fn chromium(args: &[&str], url: &str) -> String {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is needed (apt-get install chromium; cargo xtask setup)");
    let dir = std::env::temp_dir().join(format!(
        "numatrace-chromium-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        // Its own group, so that a hang ends with all of its processes.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The whole group: kill(1) takes a negative pid as a process group.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!(
                "chromium did not finish {url} in {CHROMIUM_TIMEOUT:?} (an alert, such as an import error, blocks it)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "chromium {url}: {status}: {stderr}");
    let stdout = fs::read_to_string(&out).unwrap();
    // Its profile is a few MiB; a failed run keeps it for a look.
    let _ = fs::remove_dir_all(&dir);
    stdout
}

/// A static file server on loopback: `/speedscope/...` from speedscope's
/// release files, `/exports/...` from `exports`. One thread per connection;
/// it lives as long as the test process.
pub fn serve(speedscope: PathBuf, exports: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let roots = (speedscope.clone(), exports.clone());
            std::thread::spawn(move || {
                let _ = answer(stream, &roots.0, &roots.1);
            });
        }
    });
    addr
}

fn answer(mut stream: TcpStream, speedscope: &Path, exports: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let target = request.split(' ').nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let file = if path.contains("..") {
        None
    } else if let Some(rest) = path.strip_prefix("/speedscope/") {
        Some(speedscope.join(rest))
    } else {
        path.strip_prefix("/exports/").map(|rest| exports.join(rest))
    };
    let body = file.and_then(|f| fs::read(&f).ok().map(|b| (f, b)));
    let Some((file, body)) = body else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "text/plain; charset=utf-8",
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

/// A speedscope page after it loaded `file` (served under /exports/), in its
/// sandwich view: the table of every frame is in the DOM, not only on a canvas.
pub fn speedscope_dom(addr: SocketAddr, file: &str) -> String {
    let started = Instant::now();
    let url = format!("http://{addr}/speedscope/index.html#profileURL=/exports/{file}&view=sandwich");
    // Tall enough that the sandwich table (virtualised) draws every row.
    let dom = chromium(&["--window-size=1200,3000", "--virtual-time-budget=10000", "--dump-dom"], &url);
    eprintln!("speedscope {file}: {} bytes of DOM ({:?})", dom.len(), started.elapsed());
    assert!(dom.contains(&format!("<title>{file} - speedscope</title>")), "speedscope did not load {file}: {dom}");
    assert!(!dom.contains("Something went wrong"), "speedscope failed on {file}: {dom}");
    dom
}

/// The frames of collapsed stacks (`frame;frame;... count` lines), each once.
pub fn folded_frames(text: &str) -> std::collections::BTreeSet<&str> {
    text.lines().filter_map(|l| l.rsplit_once(' ')).flat_map(|(stack, _)| stack.split(';')).collect()
}

/// speedscope's sandwich table lists `frame` (a cell of its own).
pub fn lists_frame(dom: &str, frame: &str) -> bool {
    dom.contains(&format!(">{}</td>", escape(frame)))
}
