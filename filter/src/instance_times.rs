//! A small table of instance → time in milliseconds, the format of two
//! things the filter keeps in Envoy shared data so that every worker sees
//! them: the cool-downs (until when each instance is avoided) and, per
//! model, when a request for it last went to each instance.
//!
//! One shared-data value per table (not one per instance) keeps a request's
//! host calls independent of how many instances hold its model: a table is
//! read once, and written only when something changes.
//!
//! Stored as text, one `MS NAME` line per instance; lines that do not read
//! are skipped, so a damaged value costs its entries and nothing else.

/// Instance names and a time (ms since the Unix epoch) for each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceTimes {
    entries: Vec<(String, u64)>,
}

impl InstanceTimes {
    /// Reads a stored table.
    pub fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut table = InstanceTimes::default();
        for line in text.lines() {
            let Some((ms, name)) = line.split_once(' ') else {
                continue;
            };
            if let Ok(ms) = ms.parse::<u64>() {
                table.set(name, ms);
            }
        }
        table
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (name, ms) in &self.entries {
            out.push_str(&ms.to_string());
            out.push(' ');
            out.push_str(name);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// The time recorded for `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ms)| *ms)
    }

    /// Records `ms` for `name`. A name that could not be read back (empty,
    /// or with a line break) is not recorded.
    pub fn set(&mut self, name: &str, ms: u64) {
        if name.is_empty() || name.contains(['\n', '\r']) {
            return;
        }
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = ms,
            None => self.entries.push((name.to_string(), ms)),
        }
    }

    /// Drops the entries of these names.
    pub fn remove(&mut self, names: &[&str]) {
        self.entries.retain(|(n, _)| !names.contains(&n.as_str()));
    }

    /// Drops the entries older than `cutoff`.
    pub fn forget_before(&mut self, cutoff: u64) {
        self.entries.retain(|(_, ms)| *ms >= cutoff);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_updates_in_place() {
        let mut t = InstanceTimes::default();
        t.set("gpu-a", 10);
        t.set("gpu-b", 20);
        t.set("gpu-a", 30);
        assert_eq!(t.len(), 2);
        let back = InstanceTimes::parse(&t.encode());
        assert_eq!(back, t);
        assert_eq!(back.get("gpu-a"), Some(30));
        assert_eq!(back.get("gpu-c"), None);
    }

    #[test]
    fn damaged_lines_are_skipped_and_odd_names_not_recorded() {
        let t = InstanceTimes::parse(b"12 a\nnonsense\nx b\n\n7 c d\n\xff\xfe 9\n");
        assert_eq!(t.get("a"), Some(12));
        assert_eq!(t.get("b"), None);
        assert_eq!(t.get("c d"), Some(7), "a name is the rest of the line");
        assert_eq!(t.len(), 2);
        let mut t = InstanceTimes::default();
        t.set("", 1);
        t.set("a\nb", 1);
        assert!(t.is_empty());
        assert!(InstanceTimes::parse(b"").is_empty());
    }

    #[test]
    fn old_entries_are_forgotten() {
        let mut t = InstanceTimes::default();
        t.set("a", 100);
        t.set("b", 200);
        t.forget_before(150);
        assert_eq!(t.get("a"), None);
        assert_eq!(t.get("b"), Some(200));
        t.remove(&["b", "zz"]);
        assert!(t.is_empty());
    }
}
