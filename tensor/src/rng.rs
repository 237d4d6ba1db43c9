//! SplitMix64's mixing function, shared by every counter-based random stream of
//! the engine (dropout masks here; per-step seeds in training).
//!
//! A counter-based generator computes output `i` as `mix(seed + (i + 1) * gamma)`
//! instead of stepping a state: any element can be computed on its own, in
//! parallel, in any order, with the same result. SplitMix64 (Steele, Lea and Flood
//! 2014) is that scheme with the golden-ratio increment [`GOLDEN_GAMMA`] and the
//! finaliser [`splitmix64`], a bijection of `u64` (each step is invertible: an
//! xor-shift, or a product with an odd constant) whose output bits pass
//! statistical test suites for consecutive inputs. One shared copy keeps every
//! user's streams the same function.

/// The increment of SplitMix64's state, `2^64 / phi` rounded to odd.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: mixes `z` into a `u64` whose bits all depend on all
/// of `z`'s (a bijection, so distinct inputs give distinct outputs).
///
/// ```text
/// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9      (wrapping)
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB
/// z ^ (z >> 31)
/// ```
///
/// The SplitMix64 generator's `next()` is `state += GOLDEN_GAMMA;
/// splitmix64(state)`; from state 0 its first output is `0xE220A8397B1DCDAF`.
#[inline(always)]
pub fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference generator: the state advances by the gamma before each output.
    fn outputs(mut state: u64, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                state = state.wrapping_add(GOLDEN_GAMMA);
                splitmix64(state)
            })
            .collect()
    }

    #[test]
    fn the_generator_gives_splitmix64s_reference_outputs() {
        // Vigna's splitmix64.c seeded with 0, and with 1234567.
        assert_eq!(
            outputs(0, 3),
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
        assert_eq!(
            outputs(1234567, 3),
            [6457827717110365317, 3203168211198807973, 9817491932198370423]
        );
    }

    #[test]
    fn zero_is_a_fixed_point_and_neighbours_differ_in_about_half_their_bits() {
        // Every step maps 0 to 0; that is why the generator adds the gamma first.
        assert_eq!(splitmix64(0), 0);
        for z in 1..64u64 {
            let flipped = (splitmix64(z) ^ splitmix64(z + 1)).count_ones();
            assert!((10..=54).contains(&flipped), "{z}: {flipped} bits");
        }
    }
}
