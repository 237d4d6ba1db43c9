//! The `ddpm` program. `cargo run -p ddpm --release` trains on the embedded MNIST
//! subset and writes a grid of samples; `ddpm --help` lists the commands.

fn main() {
    ddpm::app::keep_freed_memory();
    ddpm::app::main()
}
