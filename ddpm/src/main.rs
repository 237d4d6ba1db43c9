//! The `ddpm` program. `cargo run -p ddpm --release` trains on the embedded MNIST
//! subset and writes a grid of samples; `ddpm --help` lists the commands.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(message) = ddpm::app::run(&args) {
        eprintln!("ddpm: {message}");
        std::process::exit(2);
    }
}
