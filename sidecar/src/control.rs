//! The control channel from the process to its workers ([`WorkerControl`]): one unbounded
//! queue per worker, registered by the worker when it starts and read by its own runtime
//! between requests, so a controller (the reload coordinator) never blocks a worker and a
//! worker never waits for the controller. Answers go back over the channel each command
//! carries. Nothing here is on the request path.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use codec_host::Plugin;
use tokio::sync::mpsc;

/// What a worker answers a command with: its index and the outcome (a reason on failure).
pub type WorkerReply = (usize, Result<(), String>);

/// A command for one worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Start a codec of `plugin` for the worker's `protocol` codec (instance and spare) and
    /// keep it staged as reload `reload`; answer whether it started.
    Stage {
        /// The reload this belongs to.
        reload: u64,
        /// The codec's protocol.
        protocol: String,
        /// The plugin to start.
        plugin: Arc<Plugin>,
        /// Where the answer goes.
        reply: std_mpsc::Sender<WorkerReply>,
    },
    /// Switch the codec to what reload `reload` staged; answer once switched.
    Commit {
        /// The reload.
        reload: u64,
        /// The generation the codec runs from now on.
        generation: u64,
        /// Where the answer goes.
        reply: std_mpsc::Sender<WorkerReply>,
    },
    /// Drop what reload `reload` staged (another worker could not start it).
    Abort {
        /// The reload.
        reload: u64,
    },
}

/// Every worker's command queue, by worker index.
#[derive(Debug)]
pub struct WorkerControl {
    senders: Mutex<Vec<Option<mpsc::UnboundedSender<WorkerCommand>>>>,
}

impl WorkerControl {
    /// Queues for `workers` workers, none registered yet.
    pub fn new(workers: usize) -> WorkerControl {
        WorkerControl {
            senders: Mutex::new(vec![None; workers]),
        }
    }

    /// Worker `index` starts: its queue (replacing any earlier one of that index).
    pub fn register(&self, index: usize) -> mpsc::UnboundedReceiver<WorkerCommand> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if index >= senders.len() {
            senders.resize(index + 1, None);
        }
        senders[index] = Some(tx);
        rx
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.senders.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sends `command` to worker `index`.
    ///
    /// # Errors
    /// The command back when the worker never registered or has stopped.
    pub fn send(&self, index: usize, command: WorkerCommand) -> Result<(), WorkerCommand> {
        let sender = self
            .senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .cloned()
            .flatten();
        match sender {
            Some(tx) => tx.send(command).map_err(|e| e.0),
            None => Err(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reach_the_registered_worker_only_while_it_listens() {
        let control = WorkerControl::new(2);
        assert_eq!(control.workers(), 2);
        assert!(control.send(0, WorkerCommand::Abort { reload: 1 }).is_err());
        let mut rx = control.register(0);
        control.send(0, WorkerCommand::Abort { reload: 2 }).unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(WorkerCommand::Abort { reload: 2 })
        ));
        assert!(control.send(1, WorkerCommand::Abort { reload: 3 }).is_err());
        drop(rx);
        assert!(
            control.send(0, WorkerCommand::Abort { reload: 4 }).is_err(),
            "a stopped worker"
        );
    }
}
