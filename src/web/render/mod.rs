//! Rendering for people: HTML (the dashboard pages and the report share it) and SVG charts
//! (also `tune --plot`).

pub mod charts;
pub mod html;
pub mod text;
