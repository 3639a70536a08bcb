use clap::Parser;

fn main() {
    let cli = numatrace::cli::Cli::parse();
    match numatrace::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // One line: the outermost context and its cause.
            let msg = err.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
            eprintln!("numatrace: error: {msg}");
            std::process::exit(1);
        }
    }
}
