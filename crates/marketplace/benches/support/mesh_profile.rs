//! Where a mesh's memory and time go as it grows: live heap per node (counted by the
//! bench's allocator, so the figure is what the mesh holds, not what the allocator kept),
//! connections per node against the topology's degree, routing-table and gossip-mesh
//! sizes, and what a ready mesh costs at rest (CPU and heap growth over an idle window).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use p2p_otel_marketplace::RegistryNode;
use p2p_otel_testkit::mesh::{Mesh, NodeState, Topology};

/// The system allocator, counting the bytes currently allocated.
pub struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter only
// observes sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        moved
    }
}

/// Bytes allocated right now.
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`; `None`
/// where there is no procfs.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) — utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after `) `.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of the process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// How long each window of a ready mesh's CPU and heap is watched: the first starts when
/// the mesh is ready (Kademlia's automatic bootstraps still run), the second after it.
const WINDOW: Duration = Duration::from_secs(3);

/// One mesh's profile.
#[derive(Debug)]
pub struct Profile {
    pub nodes: usize,
    pub edges: usize,
    pub ready: Duration,
    /// Live heap per node when ready, and after the two windows.
    pub heap_per_node: (f64, f64),
    /// Mean and largest degree in the topology.
    pub degree: (f64, usize),
    /// Mean and largest count of connected peers after the two windows.
    pub connections: (f64, usize),
    pub routing_peers: f64,
    pub gossip_mesh_peers: f64,
    /// Cores used in each window.
    pub cores: [Option<f64>; 2],
}

impl Profile {
    /// Measures `mesh`, which took `ready` to get ready from `heap_before` bytes live,
    /// over two windows of rest. The windows are the measurement itself, not a wait for
    /// anything.
    pub async fn measure(
        mesh: &Mesh<RegistryNode>,
        topology: Topology,
        ready: Duration,
        heap_before: isize,
    ) -> Profile {
        let nodes = mesh.len();
        let per_node = |bytes: isize| (bytes - heap_before) as f64 / nodes as f64;
        let heap_ready = per_node(live_bytes());
        let mut cores = [None, None];
        for window in &mut cores {
            let (cpu, start) = (cpu_time(), Instant::now());
            // The measurement window of a mesh left alone: nothing is awaited here.
            tokio::time::sleep(WINDOW).await;
            *window = cpu.zip(cpu_time()).map(|(before, after)| {
                (after - before).as_secs_f64() / start.elapsed().as_secs_f64()
            });
        }
        let edges = topology.edges(nodes);
        let mut degrees = vec![0usize; nodes];
        for &(a, b) in &edges {
            degrees[a] += 1;
            degrees[b] += 1;
        }
        let states = mesh.states();
        let mean = |f: &dyn Fn(&NodeState<_>) -> usize| {
            states.iter().map(f).sum::<usize>() as f64 / nodes as f64
        };
        Profile {
            nodes,
            edges: edges.len(),
            ready,
            heap_per_node: (heap_ready, per_node(live_bytes())),
            degree: (
                degrees.iter().sum::<usize>() as f64 / nodes as f64,
                degrees.iter().copied().max().unwrap_or(0),
            ),
            connections: (
                mean(&|s| s.connected.len()),
                states.iter().map(|s| s.connected.len()).max().unwrap_or(0),
            ),
            routing_peers: mean(&|s| s.observations.kad_routing_peers),
            gossip_mesh_peers: mean(&|s| s.observations.gossip_mesh_peers),
            cores,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores = |c: Option<f64>| c.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"));
        write!(
            f,
            "{} nodes, {} edges, degree {:.1} (max {}): ready in {:.2} s; heap {:.2} MB/node \
             when ready, {:.2} MB/node 6 s later; connected peers {:.1} (max {}), routing \
             peers {:.1}, gossip mesh peers {:.1}; cores {} in the 3 s after ready, {} in the \
             next 3 s; resident {:.0} MB",
            self.nodes,
            self.edges,
            self.degree.0,
            self.degree.1,
            self.ready.as_secs_f64(),
            self.heap_per_node.0 / 1e6,
            self.heap_per_node.1 / 1e6,
            self.connections.0,
            self.connections.1,
            self.routing_peers,
            self.gossip_mesh_peers,
            cores(self.cores[0]),
            cores(self.cores[1]),
            resident_bytes().unwrap_or(0) as f64 / 1e6,
        )
    }
}
