//! The `ddpm` program (work in progress: see the issues).

fn main() {
    eprintln!("ddpm: training and sampling are not implemented yet; see README.md");
    std::process::exit(2);
}
