//! Which instruction set the kernels use: detected once, lowered on request.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{invalid, Result};

/// The environment variable that asks for a lower level: `avx512`, `avx2` or `scalar`.
pub const ENV_VAR: &str = "TENSOR_SIMD";

/// An instruction-set level, lowest first (so `a < b` means `a` is narrower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable code on 4-float arrays: any CPU.
    Scalar,
    /// AVX2 and FMA, 8 floats a vector.
    Avx2,
    /// AVX-512F, 16 floats a vector.
    Avx512,
}

impl Level {
    /// Every level, widest first.
    pub const ALL: [Level; 3] = [Level::Avx512, Level::Avx2, Level::Scalar];

    /// The name `TENSOR_SIMD` and `--simd` flags use.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// The level called `name` (see [`Level::name`]).
    pub fn parse(name: &str) -> Result<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                invalid(
                    "simd level",
                    format!("`{name}` is not a SIMD level (avx512, avx2 or scalar)"),
                )
            })
    }

    /// Floats per vector at this level.
    pub fn lanes(self) -> usize {
        match self {
            Level::Scalar => 4,
            Level::Avx2 => 8,
            Level::Avx512 => 16,
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} floats)", self.name(), self.lanes())
    }
}

/// The widest level this CPU has.
pub fn detected() -> Level {
    supported()[0]
}

/// The levels this CPU can run, widest first.
pub fn supported() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.is_supported()).collect()
}

/// The current level, encoded `level as u8 + 1`; 0 until first chosen.
static CURRENT: AtomicU8 = AtomicU8::new(0);

fn decode(code: u8) -> Option<Level> {
    Level::ALL.into_iter().find(|&l| l as u8 + 1 == code)
}

/// The level the kernels use now. On first use: `TENSOR_SIMD` if it is set
/// (a bad or unsupported value is reported on stderr once and ignored; programs
/// that want an error call [`configure_from_env`] first), else [`detected`].
pub fn level() -> Level {
    if let Some(l) = decode(CURRENT.load(Ordering::Relaxed)) {
        return l;
    }
    let l = match from_env() {
        Ok(Some(l)) => l,
        Ok(None) => detected(),
        Err(msg) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| eprintln!("tensor: ignoring {msg}"));
            detected()
        }
    };
    // Another thread may have chosen meanwhile (the same level, or one set
    // explicitly): keep theirs.
    match CURRENT.compare_exchange(0, l as u8 + 1, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => l,
        Err(code) => decode(code).unwrap_or(l),
    }
}

/// Makes every kernel run at `l` from now on, for the whole process. An error
/// when the CPU lacks its instructions.
pub fn set_level(l: Level) -> Result<()> {
    if !l.is_supported() {
        return Err(invalid("simd level", unsupported(l)));
    }
    CURRENT.store(l as u8 + 1, Ordering::Relaxed);
    Ok(())
}

/// Reads `TENSOR_SIMD` and sets the level from it (or the detected one when it is
/// unset); returns the level. An error naming the variable when its value is not
/// a level or the CPU cannot run it.
pub fn configure_from_env() -> Result<Level> {
    let l = from_env()
        .map_err(|msg| invalid("simd level", msg))?
        .unwrap_or_else(detected);
    set_level(l)?;
    Ok(l)
}

/// `TENSOR_SIMD`'s level, `None` when unset or empty, or why it cannot be used.
fn from_env() -> std::result::Result<Option<Level>, String> {
    let Ok(value) = std::env::var(ENV_VAR) else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Ok(None);
    }
    let l = Level::parse(&value)
        .map_err(|_| format!("{ENV_VAR}={value}: not a SIMD level (avx512, avx2 or scalar)"))?;
    if l.is_supported() {
        Ok(Some(l))
    } else {
        Err(format!("{ENV_VAR}={value}: {}", unsupported(l)))
    }
}

fn unsupported(l: Level) -> String {
    let names: Vec<&str> = supported().into_iter().map(Level::name).collect();
    format!(
        "this CPU cannot run the {} level (it runs: {})",
        l.name(),
        names.join(", ")
    )
}
