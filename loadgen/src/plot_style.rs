//! The look every PNG plot shares: the font (DejaVu Sans, shipped in `loadgen/assets/` and
//! registered at runtime, so text renders on a machine with no font packages), the size, the
//! palette, and the error a failed plot becomes. Below the results writer and the node
//! sampler's plot, which both draw with it.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::LoadgenError;

/// DejaVu Sans (Bitstream Vera licence, redistributable; see assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name the font is registered under.
pub const FAMILY: &str = "sans-serif";
/// Width and height of a plot, in pixels.
pub const SIZE: (u32, u32) = (1280, 640);

/// Series colours, in order (matplotlib's first five, then black).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(0, 0, 0),
];

/// Registers the font once per process; every plot calls it first.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; a parse failure would be a build defect, and plots would
        // then lack text rather than fail the run.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// The error a failed plot of `path` becomes.
pub fn err(path: &Path, e: impl std::fmt::Debug) -> LoadgenError {
    LoadgenError::results(path, format!("plot: {e:?}"))
}
