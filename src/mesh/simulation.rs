//! `simulate`: a run on a thread and a paused runtime of its own, every random draw from a
//! seed.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Condvar, Mutex, PoisonError};

use super::MeshError;

/// Runs the future `simulation` makes on a fresh thread whose every random draw comes from
/// `seed`, on a paused current-thread runtime (time moves only when every task waits), and
/// returns its output.
///
/// On Linux with glibc, the thread's randomness is `seed`'s from its first draw: std's
/// hash keys (every `HashMap`'s order, tokio's and futures' `select!` seeds), rand's
/// thread-local generator (gossipsub's peer sampling, Kademlia's random walks, the memory
/// transport's ports) and noise keys. The kit defines glibc's `getrandom` in the binary
/// for this and answers every other thread from the kernel, unchanged. Elsewhere the
/// thread and runtime are the same and the draws are the operating system's.
///
/// Two simulations of one seed draw the same memory-transport ports, which libp2p keeps in
/// one table per process: a simulation waits while another of its seed runs in the
/// process (different seeds run side by side). Do not start a simulation from inside
/// another of the same seed.
///
/// Build everything else from the same seed (see `docs/virtual-time.md`): the mesh
/// ([`Builder::seed`](super::Builder::seed), [`Builder::link`](super::Builder::link)),
/// its telemetry in virtual time with ids from the seed.
///
/// # Errors
///
/// [`MeshError::Simulation`] when the thread or the runtime cannot be started.
///
/// # Panics
///
/// A panic inside the simulation (a failed assertion) carries on in the caller, with its
/// message.
///
/// ```
/// # #[cfg(all(target_os = "linux", target_env = "gnu"))]
/// # fn main() -> Result<(), p2p_otel_testkit::mesh::MeshError> {
/// use std::collections::HashMap;
/// use p2p_otel_testkit::mesh;
///
/// let run = || {
///     mesh::simulate(7, || async {
///         let started = tokio::time::Instant::now();
///         tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///         let map: HashMap<u32, ()> = (0..32).map(|key| (key, ())).collect();
///         (started.elapsed().as_secs(), map.into_keys().collect::<Vec<_>>())
///     })
/// };
/// let first = run()?;
/// assert_eq!(first.0, 3600);
/// assert_eq!(first, run()?);
/// # Ok(()) }
/// # #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
/// # fn main() {}
/// ```
pub fn simulate<T, F, Fut>(seed: u64, simulation: F) -> Result<T, MeshError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let _turn = SeedTurn::take(seed);
    let thread = std::thread::Builder::new()
        .name(format!("simulation-{seed}"))
        .spawn(move || {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            super::entropy::seed_this_thread(seed);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .map_err(|e| MeshError::Simulation(super::cause(e)))?;
            Ok(runtime.block_on(simulation()))
        })
        .map_err(|e| MeshError::Simulation(super::cause(e)))?;
    match thread.join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The seeds simulating in this process now.
static RUNNING: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
/// Signalled whenever a simulation ends.
static ENDED: Condvar = Condvar::new();

/// A simulation's turn for its seed: taken once no other simulation of the seed runs,
/// given back when dropped (also when the simulation panicked).
struct SeedTurn(u64);

impl SeedTurn {
    fn take(seed: u64) -> Self {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        while running.contains(&seed) {
            running = ENDED.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        running.insert(seed);
        SeedTurn(seed)
    }
}

impl Drop for SeedTurn {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
        ENDED.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::simulate;

    /// Simulations of one seed take turns; the count of those inside never passes one.
    #[test]
    fn simulations_of_one_seed_take_turns() {
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    simulate(41, move || async move {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Real time passes on other threads while this one holds its turn.
                        tokio::task::spawn_blocking(std::thread::yield_now)
                            .await
                            .unwrap();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap()
                })
            })
            .collect();
        for run in runs {
            run.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    /// A failed assertion inside a simulation fails the caller with its message.
    #[test]
    fn a_panic_inside_carries_on_in_the_caller() {
        let caught = std::panic::catch_unwind(|| simulate(42, || async { panic!("inside") }));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"inside"));
    }
}
