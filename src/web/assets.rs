//! The embedded assets: the stylesheet every page (and the offline report) inlines, and the
//! fleet page's script. Compiled into the binary: no CDN, no file to install.

/// The stylesheet, inlined into every page and the report.
pub const STYLE: &str = include_str!("../../assets/style.css");
/// The fleet page's script, ours, inlined into the page.
pub const FLEET_SCRIPT: &str = include_str!("../../assets/fleet.js");
