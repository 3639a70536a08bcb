fn main() {
    if let Err(err) = numatrace_workloads::main_from_args(std::env::args_os()) {
        eprintln!("numatrace-workload: error: {err:#}");
        std::process::exit(1);
    }
}
