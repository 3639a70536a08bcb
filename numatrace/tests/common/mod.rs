//! Helpers the live test files share (each file is its own crate: `mod common;`).
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
};

/// Starts numatrace (`command`) with its output piped and returns once it
/// says it is tracing (loading can take seconds on a busy machine); the
/// handle gives all of its stderr once it has ended.
pub fn start_tracing(command: &mut Command) -> (Child, JoinHandle<String>) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("numatrace starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let mut stderr = String::new();
    let mut tracing = false;
    for line in lines.by_ref().map_while(Result::ok) {
        stderr.push_str(&line);
        stderr.push('\n');
        if line.starts_with("numatrace: tracing pid") {
            tracing = true;
            break;
        }
    }
    assert!(tracing, "numatrace never said it was tracing: {stderr}");
    let rest = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        stderr
    });
    (child, rest)
}
