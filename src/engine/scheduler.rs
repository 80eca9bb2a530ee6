//! Which queued jobs may start: jobs that share a resource run in arrival order,
//! unrelated jobs run side by side, at most `max_running` at once.
//!
//! Plain data, no I/O, no clock: the engine asks it and does the rest.

use crate::model::resource::{Resource, Resources};

#[derive(Debug)]
pub struct Scheduler {
    max_running: usize,
    /// Queued and running jobs in arrival order.
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    resources: Resources,
    running: bool,
}

impl Scheduler {
    pub fn new(max_running: usize) -> Self {
        Scheduler { max_running: max_running.max(1), entries: Vec::new() }
    }

    /// Queues a job; `id`s must grow with arrival.
    pub fn push(&mut self, id: u64, resources: Resources) {
        debug_assert!(self.entries.last().is_none_or(|e| e.id < id));
        self.entries.push(Entry { id, resources, running: false });
    }

    /// Marks and returns the jobs that may start now, in arrival order.
    pub fn start(&mut self) -> Vec<u64> {
        let mut running = self.entries.iter().filter(|e| e.running).count();
        let mut started = Vec::new();
        for i in 0..self.entries.len() {
            if running >= self.max_running {
                break;
            }
            let entry = &self.entries[i];
            if entry.running || self.entries[..i].iter().any(|e| e.resources.conflicts_with(&entry.resources)) {
                continue;
            }
            self.entries[i].running = true;
            running += 1;
            started.push(self.entries[i].id);
        }
        started
    }

    /// A running job gives back `key`: jobs after it that waited only for that key
    /// may start now. An exclusive job keeps everything; an unknown or finished job
    /// is ignored (its release may arrive after its end).
    pub fn release(&mut self, id: u64, key: &Resource) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id && e.running && !e.resources.exclusive) {
            entry.resources.keys.retain(|k| k != key);
        }
    }

    /// Forgets a finished (or abandoned) job.
    pub fn finish(&mut self, id: u64) {
        self.entries.retain(|e| e.id != id);
    }

    pub fn running(&self) -> usize {
        self.entries.iter().filter(|e| e.running).count()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[Resource]) -> Resources {
        Resources::of(keys.iter().cloned())
    }

    /// `a` is app `appa`: the name rules want three characters.
    fn app(name: &str) -> Resource {
        Resource::App(format!("app{name}").as_str().try_into().unwrap())
    }

    fn user(name: &str) -> Resource {
        Resource::Sysuser(format!("user{name}").as_str().try_into().unwrap())
    }

    #[test]
    fn same_resource_runs_in_arrival_order() {
        let mut s = Scheduler::new(4);
        s.push(1, keys(&[app("a")]));
        s.push(2, keys(&[app("a")]));
        s.push(3, keys(&[app("b")]));
        assert_eq!(s.start(), [1, 3], "the slow job on app:a does not hold up app:b");
        assert_eq!(s.start(), Vec::<u64>::new());
        s.finish(1);
        assert_eq!(s.start(), [2]);
    }

    #[test]
    fn a_job_waits_for_every_earlier_job_it_shares_a_key_with() {
        let mut s = Scheduler::new(4);
        s.push(1, keys(&[user("u")]));
        s.push(2, keys(&[app("a"), user("u")]));
        s.push(3, keys(&[app("a")]));
        assert_eq!(s.start(), [1], "3 must not overtake 2, which it shares app:a with");
        s.finish(1);
        assert_eq!(s.start(), [2]);
        s.finish(2);
        assert_eq!(s.start(), [3]);
    }

    #[test]
    fn a_released_key_lets_later_jobs_pass_but_the_kept_ones_still_order() {
        let mut s = Scheduler::new(4);
        s.push(1, keys(&[app("a"), Resource::WebStack]));
        s.push(2, keys(&[app("b"), Resource::WebStack]));
        s.push(3, keys(&[app("a")]));
        assert_eq!(s.start(), [1]);
        s.release(2, &Resource::WebStack);
        assert_eq!(s.start(), Vec::<u64>::new(), "a queued job releases nothing");
        s.release(1, &Resource::WebStack);
        assert_eq!(s.start(), [2], "the web stack is free; app:a is still held");
        s.release(7, &app("a"));
        s.finish(1);
        assert_eq!(s.start(), [3]);
    }

    #[test]
    fn exclusive_jobs_wait_for_all_and_hold_up_all() {
        let mut s = Scheduler::new(4);
        s.push(1, keys(&[app("a")]));
        s.push(2, Resources::exclusive());
        s.push(3, keys(&[app("b")]));
        assert_eq!(s.start(), [1]);
        s.finish(1);
        assert_eq!(s.start(), [2]);
        s.finish(2);
        assert_eq!(s.start(), [3]);
        assert_eq!(s.running(), 1);
    }

    #[test]
    fn parallelism_is_bounded() {
        let mut s = Scheduler::new(2);
        for id in 1..=5 {
            s.push(id, keys(&[app(&id.to_string())]));
        }
        assert_eq!(s.start(), [1, 2]);
        s.finish(2);
        assert_eq!(s.start(), [3]);
        for id in [1, 3, 4, 5] {
            s.finish(id);
        }
        assert!(s.is_empty());
    }
}
