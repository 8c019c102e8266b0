//! Which firmware family a miner runs, decided before its version is read: upstream
//! ESP-Miner (`v2.x`), the NerdQAxe family (`v1.0.x`, its own field names), Lucky Miner's
//! vendor builds (`1.x`, board `302`), or unknown. A fork's version is never read as
//! upstream's: a NerdQAxe `v1.0.37` is not "older than v2.2". What a write needs — restart
//! to apply or not — follows from the family and then the version.

use serde::{Deserialize, Serialize};

/// A firmware family (the `firmware_family` label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirmwareFamily {
    /// Upstream ESP-Miner / AxeOS `v2.x` (and builds of it with a suffix, `2.15-tch`).
    EspMiner,
    /// `shufps/ESP-Miner-NerdQAxePlus`: NerdQAxe+, NerdQAxe++, NerdOctaxe, …
    NerdQaxe,
    /// Lucky Miner LV06 / LV07 / LV08 stock firmware.
    Lucky,
    /// Nothing the miner reports settles it.
    #[default]
    Unknown,
}

impl FirmwareFamily {
    pub fn as_label(self) -> &'static str {
        match self {
            FirmwareFamily::EspMiner => "esp-miner",
            FirmwareFamily::NerdQaxe => "nerdqaxe",
            FirmwareFamily::Lucky => "lucky",
            FirmwareFamily::Unknown => "unknown",
        }
    }
}

/// `--assume-family`: a family the user vouches for (never `unknown`).
pub fn parse_known(text: &str) -> Result<FirmwareFamily, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "esp-miner" | "espminer" | "upstream" => Ok(FirmwareFamily::EspMiner),
        "nerdqaxe" => Ok(FirmwareFamily::NerdQaxe),
        "lucky" => Ok(FirmwareFamily::Lucky),
        other => Err(format!(
            "\"{other}\" is not a family this build writes to: esp-miner, nerdqaxe or lucky"
        )),
    }
}

/// Why nothing is written to a miner of an unknown family, and how to say what it runs.
pub fn unknown_refusal(name: &str, firmware: Option<&str>) -> String {
    format!(
        "{name}: its firmware family is unknown (version {}): nothing is written to a miner whose write rules \
         (restart to apply or not, integer MHz) are not known; pass --assume-family esp-miner|nerdqaxe|lucky if \
         you know what it runs",
        crate::axeos::printable(firmware.unwrap_or("not reported"))
    )
}

/// What a `/api/system/info` body says that tells the families apart.
#[derive(Debug, Clone, Default)]
pub struct FamilyHints<'a> {
    pub version: Option<&'a str>,
    /// NerdQAxe builds name their board here (upstream has no such field).
    pub device_model: Option<&'a str>,
    /// Lucky builds: `"Lucky Miner LV07"` and the like.
    pub miner_model: Option<&'a str>,
    pub board_version: Option<&'a str>,
    /// Upstream v2.11+ sends the web UI's version beside the firmware's.
    pub has_axeos_version: bool,
    /// Fields only the NerdQAxe family sends (`asicTemps`, `freeHeapInt`, `fanrpm2`,
    /// `foundBlocks`, `vrTempInt`).
    pub has_nerdqaxe_fields: bool,
}

/// The family a miner's body points to. Field evidence first (a fork's own field names or
/// model fields), then the shape of the version: `v2.x` is upstream, `v1.0.x` with the
/// `v` is the NerdQAxe family, a bare `1.x` on board `302` is Lucky's stock firmware.
pub fn decide(hints: &FamilyHints<'_>) -> FirmwareFamily {
    let version = hints.version.map(str::trim).unwrap_or("");
    let prefixed = version.starts_with(['v', 'V']);
    // Only a version-shaped `major.minor` says anything: a commit hash (`2a1b3c4`) does not.
    let major = firmware_version(version).map(|(major, _)| major);
    let lucky_model = hints
        .miner_model
        .is_some_and(|m| m.to_ascii_lowercase().contains("lucky") || m.to_ascii_uppercase().contains("LV0"));
    // A `deviceModel` in the info body is the NerdQAxe family's, unless the version is
    // upstream's: the old multichip fork of upstream (Hex units) sent one too.
    let nerd_model = hints.device_model.is_some_and(|m| {
        let m = m.trim().to_ascii_lowercase();
        !m.is_empty() && (m.starts_with("nerd") || major != Some(2))
    });
    if hints.has_nerdqaxe_fields || nerd_model {
        return FirmwareFamily::NerdQaxe;
    }
    // Upstream built for Lucky hardware (ESP-Miner-LVXX) may name the Lucky model, but runs
    // upstream's code and write rules: its `v2.x` version (or its web UI's) says so.
    let upstream_version = prefixed && major == Some(2);
    if lucky_model && !upstream_version && !hints.has_axeos_version {
        return FirmwareFamily::Lucky;
    }
    match (major, prefixed) {
        (Some(2), _) => FirmwareFamily::EspMiner,
        _ if hints.has_axeos_version => FirmwareFamily::EspMiner,
        (Some(1), true) => FirmwareFamily::NerdQaxe,
        (Some(1), false) if hints.board_version == Some("302") => FirmwareFamily::Lucky,
        _ => FirmwareFamily::Unknown,
    }
}

/// Whether a written clock setting runs only after a restart: upstream before v2.2 and
/// Lucky's stock firmware (built on an early upstream) store it and run it at boot; the
/// NerdQAxe family and upstream from v2.2 apply it live. `None` for an unknown family:
/// nothing is known, so a write should not guess.
pub fn restart_to_apply(family: FirmwareFamily, version: Option<&str>) -> Option<bool> {
    match family {
        FirmwareFamily::EspMiner => Some(version.and_then(firmware_version).is_some_and(|v| v < (2, 2))),
        FirmwareFamily::Lucky => Some(true),
        FirmwareFamily::NerdQaxe => Some(false),
        FirmwareFamily::Unknown => None,
    }
}

/// Whether a frequency with a fraction (`562.5`) is taken: upstream from v2.10 stores the
/// frequency as a float; before, and in the NerdQAxe family (an integer handler) and Lucky's
/// early-upstream builds, a fraction is cut or ignored. `None` for an unknown family.
pub fn takes_fractional_mhz(family: FirmwareFamily, version: Option<&str>) -> Option<bool> {
    match family {
        FirmwareFamily::EspMiner => Some(version.and_then(firmware_version).is_some_and(|v| v >= (2, 10))),
        FirmwareFamily::NerdQaxe | FirmwareFamily::Lucky => Some(false),
        FirmwareFamily::Unknown => None,
    }
}

/// (major, minor) of a firmware version string such as `v2.10.1`; `None` for a build
/// that names no version (`esp-miner-dev`).
///
/// Only a version-shaped string counts: `major.minor` at the start (after an optional
/// `v`). A build named by its commit (ESP-IDF's `git describe --always` without tags, e.g.
/// `2a1b3c4`) is no version: read digit by digit it would be "v2.1", older than v2.2.
pub fn firmware_version(firmware: &str) -> Option<(u32, u32)> {
    let text = firmware.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let (major, rest) = text.split_once('.')?;
    let minor_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let minor = &rest[..minor_len];
    let digits = |n: &str| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit());
    if !(digits(major) && digits(minor)) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(version: &str) -> FirmwareFamily {
        decide(&FamilyHints {
            version: Some(version),
            ..FamilyHints::default()
        })
    }

    #[test]
    fn the_version_shape_decides_only_after_the_fields() {
        assert_eq!(family("v2.15.0"), FirmwareFamily::EspMiner);
        assert_eq!(family("v2.0.3"), FirmwareFamily::EspMiner);
        assert_eq!(family("2.15-tch"), FirmwareFamily::EspMiner);
        assert_eq!(family("v1.0.37"), FirmwareFamily::NerdQaxe);
        assert_eq!(family("V1.0.37.3-LTS"), FirmwareFamily::NerdQaxe);
        assert_eq!(family("esp-miner-dev"), FirmwareFamily::Unknown);
        assert_eq!(family("v2.15.0-12-gabcdef-dirty"), FirmwareFamily::EspMiner);
        assert_eq!(family("2.1.8b1"), FirmwareFamily::EspMiner);
        // A build named by its commit (ESP-IDF's `git describe --always` in a clone
        // without tags) is no version: not upstream v2.1 (a restart on every write).
        assert_eq!(family("2a1b3c4"), FirmwareFamily::Unknown);
        assert_eq!(family("1f00dca-dirty"), FirmwareFamily::Unknown);
        assert_eq!(family(""), FirmwareFamily::Unknown);
        assert_eq!(
            family("1.1.0"),
            FirmwareFamily::Unknown,
            "a bare 1.x alone says nothing"
        );
        let lucky_board = FamilyHints {
            version: Some("1.1.0"),
            board_version: Some("302"),
            ..FamilyHints::default()
        };
        assert_eq!(decide(&lucky_board), FirmwareFamily::Lucky);
        // Upstream built for Lucky hardware reports board 302 with a v2 version: upstream.
        let upstream_on_lucky = FamilyHints {
            version: Some("v2.9.0"),
            board_version: Some("302"),
            ..FamilyHints::default()
        };
        assert_eq!(decide(&upstream_on_lucky), FirmwareFamily::EspMiner);
        let nerd = FamilyHints {
            version: Some("v1.0.38-alpha9"),
            device_model: Some("NerdQAxe++"),
            ..FamilyHints::default()
        };
        assert_eq!(decide(&nerd), FirmwareFamily::NerdQaxe);
        let multichip = FamilyHints {
            version: Some("v2.0.8"),
            device_model: Some("Hex"),
            ..FamilyHints::default()
        };
        assert_eq!(
            decide(&multichip),
            FirmwareFamily::EspMiner,
            "upstream's multichip fork"
        );
        let lucky = FamilyHints {
            version: Some("1.1.0"),
            miner_model: Some("Lucky Miner LV07"),
            ..FamilyHints::default()
        };
        assert_eq!(decide(&lucky), FirmwareFamily::Lucky);
        let upstream_lucky_build = FamilyHints {
            version: Some("v2.10.0-1.9.1"),
            miner_model: Some("LV07"),
            board_version: Some("302"),
            ..FamilyHints::default()
        };
        assert_eq!(decide(&upstream_lucky_build), FirmwareFamily::EspMiner);
    }

    #[test]
    fn a_fork_is_never_restarted_by_upstreams_pre_2_2_rule() {
        assert_eq!(restart_to_apply(FirmwareFamily::NerdQaxe, Some("v1.0.37")), Some(false));
        assert_eq!(restart_to_apply(FirmwareFamily::Lucky, Some("1.1.0")), Some(true));
        assert_eq!(restart_to_apply(FirmwareFamily::EspMiner, Some("v2.1.10")), Some(true));
        assert_eq!(restart_to_apply(FirmwareFamily::EspMiner, Some("v2.2.0")), Some(false));
        assert_eq!(restart_to_apply(FirmwareFamily::EspMiner, Some("v2.15.0")), Some(false));
        assert_eq!(restart_to_apply(FirmwareFamily::Unknown, Some("v1.0.37")), None);
        // Upstream (its web UI's version says so) built from a commit without tags: no
        // version to read, so no pre-v2.2 restart and no fraction.
        assert_eq!(restart_to_apply(FirmwareFamily::EspMiner, Some("2a1b3c4")), Some(false));
        assert_eq!(
            takes_fractional_mhz(FirmwareFamily::EspMiner, Some("2a1b3c4")),
            Some(false)
        );
        assert_eq!(
            takes_fractional_mhz(FirmwareFamily::EspMiner, Some("v2.10.1")),
            Some(true)
        );
        assert_eq!(
            takes_fractional_mhz(FirmwareFamily::EspMiner, Some("v2.9.0")),
            Some(false)
        );
        assert_eq!(
            takes_fractional_mhz(FirmwareFamily::NerdQaxe, Some("v1.0.37")),
            Some(false)
        );
    }
}
