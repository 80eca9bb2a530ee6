//! A shutdown signal that any number of tasks can wait on.
//!
//! `main` triggers it on SIGTERM/SIGINT; tests trigger it by hand. Tasks take a
//! [`Shutdown`] (or a plain future) so the daemon and its tests drive them alike.

use tokio::sync::watch;

/// Fires the signal.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the signal; clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once the signal has fired (at once if it already has), or once
    /// the trigger is dropped.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_signal() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        let mut b = shutdown;
        assert!(!a.is_triggered());
        trigger.trigger();
        a.wait().await;
        b.wait().await;
        assert!(b.is_triggered());
    }
}
