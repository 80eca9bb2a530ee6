//! The attack tests' bookkeeping: every attack of a test is tried and judged by
//! its effect, all that worked are reported, then the test fails.

/// The attacks that worked in one test.
pub struct Verdicts(Vec<String>);

impl Verdicts {
    pub fn new() -> Verdicts {
        Verdicts(Vec::new())
    }

    /// `held`: berth's promise held against `attack`; otherwise `effect` says what happened.
    pub fn judge(&mut self, attack: &str, held: bool, effect: impl std::fmt::Display) {
        if held {
            eprintln!("attack failed, as it must [{attack}]");
        } else {
            let line = format!("[{attack}] {effect}");
            eprintln!("ATTACK WORKED {line}");
            self.0.push(line);
        }
    }

    pub fn assert_none_worked(self) {
        assert!(self.0.is_empty(), "{} attack(s) worked:\n{}", self.0.len(), self.0.join("\n"));
    }
}
