//! `floodguard check-config`: what a valid configuration holds, as people read it.

use std::fmt::Write;

use crate::config::{Config, Kind};

/// The sites by street and kind, and the teams covering each street.
pub fn describe(c: &Config) -> String {
    let mut out = String::new();
    let d = &c.sites.district;
    let _ = writeln!(
        out,
        "{}: OK — {} ({}), {} streets, {} sites, {} teams",
        c.main_file.display(),
        d.name,
        d.id,
        c.sites.streets.len(),
        c.sites.sites.len(),
        c.teams.teams.len()
    );
    for street in &c.sites.streets {
        let teams: Vec<String> = c
            .teams
            .teams
            .iter()
            .filter(|t| t.streets.contains(&street.id))
            .map(|t| format!("{} {}", t.id, t.name))
            .collect();
        let _ = writeln!(
            out,
            "\n{} ({}) — teams: {}",
            street.name,
            street.id,
            if teams.is_empty() { "none!".into() } else { teams.join(", ") }
        );
        for kind in Kind::ALL {
            let sites: Vec<_> =
                c.sites.sites.iter().filter(|s| s.street == street.id && s.kind == *kind).collect();
            if sites.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {} {}", kind.name_zh(), kind);
            for s in sites {
                let params: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    out,
                    "    {:<10} {} [{}]{}",
                    s.id,
                    s.name,
                    s.category.name_zh(),
                    if params.is_empty() { String::new() } else { format!("  {}", params.join(" ")) }
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_reads_by_street_and_kind() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let c = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let text = describe(&c);
        assert!(text.contains("OK — 某区 (mouqu), 3 streets, 15 sites, 3 teams"), "{text}");
        assert!(text.contains("城东街道 (chengdong) — teams: team1 一队"), "{text}");
        assert!(text.contains("  积水点 waterlogging\n    CD-JS-01   人民路铁路桥下穿 [下穿通道]"), "{text}");
        assert!(
            text.contains("BH-SW-01   清水河滨河大桥 [河道]  guarantee_level_m=5.2 warning_level_m=4.5"),
            "{text}"
        );
        let binhe = text.find("滨河街道").unwrap();
        assert!(text[binhe..].find("BH-BZ-01").is_some() && text.find("BH-BZ-01").unwrap() > binhe);
    }
}
