//! Response levels of the flood emergency plan: Ⅳ (blue) → Ⅰ (red).

string_enum! {
    /// A response level, written `"IV"` … `"I"` in config, API and InfluxDB.
    /// Ordered by severity: `IV < III < II < I` (declaration order; `ALL` runs
    /// from least to most severe). "Normal" is `Option<Level>::None`.
    #[derive(PartialOrd, Ord)]
    pub enum Level ("level") {
        /// Ⅳ级 蓝色 一般
        IV = "IV",
        /// Ⅲ级 黄色 较重
        III = "III",
        /// Ⅱ级 橙色 严重
        II = "II",
        /// Ⅰ级 红色 特别严重
        I = "I",
    }
}

impl Level {
    /// 1 (Ⅳ) … 4 (Ⅰ): the `level` field of `area_level`; 0 is normal.
    pub fn rank(self) -> u8 {
        match self {
            Level::IV => 1,
            Level::III => 2,
            Level::II => 3,
            Level::I => 4,
        }
    }

    pub fn from_rank(rank: u8) -> Option<Level> {
        Level::ALL.get(usize::from(rank).checked_sub(1)?).copied()
    }

    /// The level as written in Chinese plans: `Ⅲ级`.
    pub fn roman(self) -> &'static str {
        match self {
            Level::IV => "Ⅳ",
            Level::III => "Ⅲ",
            Level::II => "Ⅱ",
            Level::I => "Ⅰ",
        }
    }

    pub fn colour_zh(self) -> &'static str {
        match self {
            Level::IV => "蓝色",
            Level::III => "黄色",
            Level::II => "橙色",
            Level::I => "红色",
        }
    }

    pub fn colour_en(self) -> &'static str {
        match self {
            Level::IV => "blue",
            Level::III => "yellow",
            Level::II => "orange",
            Level::I => "red",
        }
    }
}

/// The rank of an optional level: 0 for normal.
pub fn rank(level: Option<Level>) -> u8 {
    level.map_or(0, Level::rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_and_ranks() {
        assert!(Level::IV < Level::III && Level::III < Level::II && Level::II < Level::I);
        for &l in Level::ALL {
            assert_eq!(Level::from_rank(l.rank()), Some(l));
        }
        assert_eq!(Level::from_rank(0), None);
        assert_eq!(Level::from_rank(5), None);
        assert_eq!(rank(None), 0);
        assert_eq!(serde_json::to_string(&Level::III).unwrap(), "\"III\"");
    }
}
