//! What one rule test did: kept by the pipeline's result (and its failure), printed by
//! `berth rules test`.

/// What one case did.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub tests_file: String,
    pub rule_file: String,
    /// 1-based position in the file.
    pub index: usize,
    pub name: Option<String>,
    pub function: String,
    /// `None` when it passed.
    pub failure: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// `#2 (freeze window holds everything)` or `#2`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("#{} ({name})", self.index),
            None => format!("#{}", self.index),
        }
    }
}
