//! The reference P2P marketplace over real libp2p meshes: one test binary for this area.

use std::time::{Duration, Instant};

use p2p_otel_marketplace::{
    self as marketplace, scenarios, Config, LocalRegistry, MarketplaceError, P2PRegistry, Package,
    PackageId, Query, Registry, RegistryNode, Version,
};
use p2p_otel_testkit::mesh::{self, Discovery, Mesh, Security, Topology};

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

fn id(text: &str) -> PackageId {
    text.parse().unwrap()
}

fn version(text: &str) -> Version {
    text.parse().unwrap()
}

fn package(name: &str, v: &str, title: &str) -> Package {
    Package::new(id(name), version(v), title)
}

async fn marketplace(n: usize, config: Config) -> Mesh<RegistryNode> {
    // These tests bootstrap from addresses and reach peers outside the mesh (a silent
    // peer, a raw one): Kademlia dials what it learns of, as in production.
    marketplace_with(n, config, Discovery::Open).await
}

async fn marketplace_with(n: usize, config: Config, discovery: Discovery) -> Mesh<RegistryNode> {
    mesh::Builder::new(n)
        .seed(9)
        .security(Security::Plaintext)
        .discovery(discovery)
        .start(marketplace::node_constructor(move |_| config.clone()))
        .await
        .unwrap()
}

fn handles(mesh: &Mesh<RegistryNode>, config: &Config) -> Vec<P2PRegistry> {
    (0..mesh.len())
        .map(|i| marketplace::registry(mesh, i, config).unwrap())
        .collect()
}

/// Waits until every node in `nodes` has indexed `count` packages (gossip delivered).
async fn indexed(mesh: &Mesh<RegistryNode>, nodes: &[usize], count: usize) {
    mesh.wait_until(
        &format!("nodes {nodes:?} to index {count} package(s)"),
        WAIT,
        |states| {
            nodes
                .iter()
                .all(|&i| states[i].observations.packages == count)
        },
    )
    .await
    .unwrap();
}

/// Waits until every node has Kademlia routing entries: until then a write's quorum can
/// fail on a node that was only dialed and has not heard the dialer's addresses yet.
async fn routing_ready(mesh: &Mesh<RegistryNode>) {
    mesh.wait_until("Kademlia routing entries on every node", WAIT, |states| {
        states.iter().all(|s| s.observations.kad_routing_peers >= 1)
    })
    .await
    .unwrap();
}

/// A peer that never answers registry requests (seeded by `seed`), connected to node 0.
async fn silent_peer_connected_to_node_0(
    mesh: &Mesh<RegistryNode>,
    seed: u64,
) -> (Mesh<marketplace::SilentPeer>, libp2p::PeerId) {
    let silent =
        marketplace::silent_peer(marketplace::REGISTRY_PROTOCOL, seed, Security::Plaintext)
            .await
            .unwrap();
    silent
        .node(0)
        .unwrap()
        .send((mesh.peer_id(0).unwrap(), mesh.addr(0).unwrap()))
        .await
        .unwrap();
    let silent_peer = silent.peer_id(0).unwrap();
    mesh.wait_until("the silent peer connected", WAIT, |s| {
        s[0].connected.contains(&silent_peer)
    })
    .await
    .unwrap();
    (silent, silent_peer)
}

/// Waits until every node has routing entries and a gossip mesh peer.
async fn gossip_ready(mesh: &Mesh<RegistryNode>) {
    marketplace::wait_ready(mesh, WAIT).await.unwrap();
}

mod models {
    use super::*;

    #[test]
    fn bad_ids_and_versions_are_typed_errors() {
        for bad in [
            "",
            "acme",
            "Acme/tool",
            "acme/",
            "/tool",
            "acme/to ol",
            "acme/-tool",
            "a/b/c",
        ] {
            assert!(
                matches!(
                    bad.parse::<PackageId>(),
                    Err(MarketplaceError::InvalidPackageId(_))
                ),
                "{bad:?} was accepted"
            );
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3-b@d",
            "1.2.3-beta..1",
            "1.2.3-beta.01",
            "1.2.3+",
        ] {
            assert!(
                matches!(
                    bad.parse::<Version>(),
                    Err(MarketplaceError::InvalidVersion(_))
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(version("1.0.0-alpha") < version("1.0.0"));
        // SemVer §11: numeric identifiers compare as numbers, and the rest of the chain.
        assert!(version("1.0.0-beta.2") < version("1.0.0-beta.10"));
        assert!(version("1.0.0-alpha") < version("1.0.0-alpha.1"));
        assert!(version("1.0.0-alpha.beta") < version("1.0.0-beta"));
        assert!(version("1.0.0-rc.1") < version("1.0.0-rc.1a"));
        // §10: build metadata is kept and shown, and ignored by precedence; where
        // precedence ties it still tells two versions apart (the index keeps both).
        let built = version("1.0.0-beta.2+exp.sha.5114f85");
        assert_eq!(built.to_string(), "1.0.0-beta.2+exp.sha.5114f85");
        assert_eq!(
            built
                .as_semver()
                .cmp_precedence(version("1.0.0-beta.2").as_semver()),
            std::cmp::Ordering::Equal
        );
        assert_ne!(built, version("1.0.0-beta.2+exp.sha.5114f86"));
        assert!(version("1.0.0-beta.2") < built);
        assert!(built < version("1.0.0-beta.10+build.1"));
        let round_trip: Version =
            serde_json::from_str(&serde_json::to_string(&built).unwrap()).unwrap();
        assert_eq!(round_trip.as_semver().build.as_str(), "exp.sha.5114f85");
        assert!(version("1.10.0") > version("1.9.9"));
        let json = serde_json::to_string(&package("acme/tool", "1.0.0", "t")).unwrap();
        let tampered = json.replace("acme/tool", "ACME/tool");
        assert!(
            serde_json::from_str::<Package>(&tampered).is_err(),
            "validated on decode too"
        );
    }

    #[tokio::test]
    async fn local_search_ranks_filters_and_pages() {
        let registry = LocalRegistry::default();
        let mut tagged = package("net/kit", "1.0.0", "Toolkit");
        tagged.metadata.tags = vec!["http".into()];
        tagged.metadata.categories = vec!["networking".into()];
        for p in [
            package("acme/http", "1.0.0", "exact name"),
            package("acme/http-client", "1.0.0", "prefix"),
            package("acme/fetch", "2.0.0", "An HTTP fetcher"),
            tagged,
            package("acme/other", "1.0.0", "unrelated"),
        ] {
            registry.publish(p).await.unwrap();
        }
        let names = |hits: Vec<Package>| {
            hits.into_iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
        };
        let all = registry.search(&Query::text("http")).await.unwrap();
        // exact name > name prefix > title > tag
        assert_eq!(
            names(all),
            ["acme/http", "acme/http-client", "acme/fetch", "net/kit"]
        );
        let page = Query {
            offset: Some(1),
            limit: Some(2),
            ..Query::text("http")
        };
        assert_eq!(
            names(registry.search(&page).await.unwrap()),
            ["acme/http-client", "acme/fetch"]
        );
        let filtered = Query {
            categories: vec!["networking".into()],
            ..Query::text("http")
        };
        assert_eq!(
            names(registry.search(&filtered).await.unwrap()),
            ["net/kit"]
        );
    }

    #[tokio::test]
    async fn an_oversized_package_is_refused_and_nothing_is_stored() {
        let mesh = marketplace(1, Config::for_tests()).await;
        let node = &handles(&mesh, &Config::for_tests())[0];
        let mut huge = package("acme/huge", "1.0.0", "big");
        huge.metadata.description = "x".repeat(marketplace::DEFAULT_MAX_PACKAGE_BYTES + 1);
        let error = node.publish(huge).await.unwrap_err();
        assert!(
            matches!(error, MarketplaceError::PackageTooLarge { .. }),
            "{error}"
        );
        assert!(!node.exists(&id("acme/huge")).await.unwrap_or(true));
        assert_eq!(node.stats().await.unwrap().packages, 0);
    }
}

mod three_nodes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_search_get_versions_delete() {
        let config = Config::for_tests();
        let mut mesh = marketplace(3, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        gossip_ready(&mesh).await;
        let [a, b, c] = <[P2PRegistry; 3]>::try_from(handles(&mesh, &config)).unwrap();

        a.publish(package("acme/tool", "1.0.0", "A tool"))
            .await
            .unwrap();
        a.publish(package("acme/tool", "1.1.0", "A tool, better"))
            .await
            .unwrap();
        let hits = c.search(&Query::text("acme/tool")).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(
            hits[0].version,
            version("1.1.0"),
            "latest version, de-duplicated"
        );

        let got = b
            .get_package_version(&id("acme/tool"), &version("1.0.0"))
            .await
            .unwrap();
        assert_eq!(got.metadata.title, "A tool");
        assert_eq!(
            b.list_versions(&id("acme/tool")).await.unwrap(),
            [version("1.0.0"), version("1.1.0")]
        );
        assert_eq!(
            c.get_package(&id("acme/tool")).await.unwrap().version,
            version("1.1.0")
        );
        assert_eq!(
            c.metadata(&id("acme/tool")).await.unwrap().title,
            "A tool, better"
        );

        assert!(a.exists(&id("acme/tool")).await.unwrap());
        a.delete(&id("acme/tool")).await.unwrap();
        assert!(!a.exists(&id("acme/tool")).await.unwrap());
        indexed(&mesh, &[1, 2], 0).await;
        assert!(!c.exists(&id("acme/tool")).await.unwrap());
        assert!(c
            .search(&Query::text("acme/tool"))
            .await
            .unwrap()
            .is_empty());
        let missing = b
            .get_package_version(&id("acme/tool"), &version("1.0.0"))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, MarketplaceError::NotFound(_)),
            "{missing}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bootstrap_dials_the_given_peers_under_their_ids() {
        let config = Config::for_tests();
        let mesh = marketplace(3, config.clone()).await;
        let nodes = handles(&mesh, &config);
        let peers = vec![
            (mesh.peer_id(1).unwrap(), mesh.addr(1).unwrap()),
            (mesh.peer_id(2).unwrap(), mesh.addr(2).unwrap()),
        ];
        let connected = nodes[0].bootstrap_from(peers).await.unwrap();
        assert_eq!(connected, 2);
        let states = mesh.states();
        assert!(states[0].connected.contains(&mesh.peer_id(1).unwrap()));
        assert_eq!(states[0].observations.kad_routing_peers, 2);
        let alone = marketplace(1, config.clone()).await;
        let error = handles(&alone, &config)[0].bootstrap().await.unwrap_err();
        assert!(matches!(error, MarketplaceError::Network(_)), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_searches_hit_the_cache_until_it_expires_or_data_changes() {
        let config = Config {
            cache_ttl: Duration::from_secs(60),
            ..Config::for_tests()
        };
        let mut mesh = marketplace(2, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        routing_ready(&mesh).await;
        let nodes = handles(&mesh, &config);
        nodes[1]
            .publish(package("acme/cached", "1.0.0", "Cached"))
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                nodes[0].search(&Query::text("cached")).await.unwrap().len(),
                1
            );
        }
        let stats = nodes[0].stats().await.unwrap();
        assert_eq!((stats.cache_misses, stats.cache_hits), (1, 2));
        nodes[0]
            .publish(package("acme/cached-too", "1.0.0", "Cached"))
            .await
            .unwrap();
        assert_eq!(
            nodes[0].search(&Query::text("cached")).await.unwrap().len(),
            2,
            "a publish clears the cache"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_concurrent_searches_through_clones_all_complete() {
        let config = Config::for_tests();
        let mut mesh = marketplace(3, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        routing_ready(&mesh).await;
        let nodes = handles(&mesh, &config);
        nodes[1]
            .publish(package("acme/tool", "1.0.0", "A tool"))
            .await
            .unwrap();
        let handle = nodes[0].clone();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.search(&Query::text("tool")).await })
            })
            .collect();
        for task in tasks {
            let hits = task.await.unwrap().unwrap();
            assert_eq!(hits.len(), 1);
        }
    }
}

mod resilience {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixteen_nodes_in_a_ring_find_a_package_across_the_ring() {
        let config = Config::for_tests();
        // A ring, not a starting point: with discovery open, the publish's DHT lookup and
        // Kademlia's automatic bootstraps made it all-to-all — 240 connections dialed and
        // handshaken while the put waited, 0.2 s on an idle machine, 10 s with the cores
        // busy and over the 30 s deadline in the concurrent soak.
        let mut mesh = marketplace_with(16, config.clone(), Discovery::Off).await;
        mesh.connect_topology(Topology::Ring, WAIT).await.unwrap();
        gossip_ready(&mesh).await;
        let nodes = handles(&mesh, &config);
        nodes[0]
            .publish(package("acme/ring", "1.0.0", "Round"))
            .await
            .unwrap();
        indexed(&mesh, &[8], 1).await;
        let hits = nodes[8].search(&Query::text("ring")).await.unwrap();
        assert_eq!(
            hits.iter().map(|p| p.id.to_string()).collect::<Vec<_>>(),
            ["acme/ring"]
        );
    }

    /// Gossip repairs a missed announcement only while it is in the sender's gossip
    /// window; catch-up repairs it whenever. The fault: the publisher's gossip heartbeat is
    /// an hour, so it never offers (IHAVE) the announcement to a node that joins later —
    /// only catch-up can bring it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_missed_an_announcement_catches_up_from_a_peer() {
        let config = Config::for_tests();
        let per_node = config.clone();
        let mut mesh = mesh::Builder::new(3)
            .seed(9)
            .security(Security::Plaintext)
            .start(marketplace::node_constructor(move |ctx| Config {
                gossip_heartbeat: if ctx.index == 0 {
                    Duration::from_secs(3600)
                } else {
                    per_node.gossip_heartbeat
                },
                ..per_node.clone()
            }))
            .await
            .unwrap();
        mesh.connect(0, 1).await.unwrap();
        mesh.wait_until("nodes 0 and 1 to route and subscribe", WAIT, |states| {
            states[..2].iter().all(|s| {
                s.observations.kad_routing_peers >= 1 && s.observations.gossip_topic_peers >= 1
            })
        })
        .await
        .unwrap();
        let nodes = handles(&mesh, &config);
        nodes[0]
            .publish(package("acme/missed", "1.0.0", "Announced before you came"))
            .await
            .unwrap();
        indexed(&mesh, &[1], 1).await;
        assert_eq!(mesh.states()[2].observations.packages, 0);

        mesh.connect(2, 0).await.unwrap();
        mesh.wait_until("node 2 to catch up", WAIT, |states| {
            states[2].observations.packages == 1
        })
        .await
        .unwrap();
        let late = mesh.states()[2].observations;
        assert_eq!(late.packages_caught_up, 1, "{late:?}");
        let hits = nodes[2].search(&Query::text("missed")).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_publisher_leaves_its_package_findable_and_rejoins_with_its_identity() {
        let config = Config {
            replication: 2,
            ..Config::for_tests()
        };
        let mut mesh = marketplace(4, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        gossip_ready(&mesh).await;
        let nodes = handles(&mesh, &config);
        nodes[0]
            .publish(package("acme/durable", "1.0.0", "Survives"))
            .await
            .unwrap();
        let peer = mesh.peer_id(0).unwrap();
        mesh.kill(0).await.unwrap();
        assert!(matches!(
            nodes[0].search(&Query::text("x")).await,
            Err(MarketplaceError::NodeStopped)
        ));
        let got = nodes[3]
            .get_package_version(&id("acme/durable"), &version("1.0.0"))
            .await
            .unwrap();
        assert_eq!(got.metadata.title, "Survives");
        assert_eq!(
            nodes[2]
                .search(&Query::text("durable"))
                .await
                .unwrap()
                .len(),
            1
        );

        mesh.restart(0, WAIT).await.unwrap();
        assert_eq!(mesh.peer_id(0).unwrap(), peer);
        let restarted = marketplace::registry(&mesh, 0, &config).unwrap();
        let hits = restarted.search(&Query::text("durable")).await.unwrap();
        assert_eq!(
            hits.len(),
            1,
            "found again through its peers after rejoining"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partitioned_node_answers_locally_within_its_timeout_then_heals() {
        let config = Config::for_tests();
        let mut mesh = marketplace(3, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        routing_ready(&mesh).await;
        let nodes = handles(&mesh, &config);
        mesh.partition(&[&[0], &[1, 2]], WAIT).await.unwrap();
        nodes[1]
            .publish(package("acme/island", "1.0.0", "Other side"))
            .await
            .unwrap();
        let started = Instant::now();
        let hits = nodes[0].search(&Query::text("island")).await.unwrap();
        assert!(hits.is_empty(), "local-only results: {hits:?}");
        assert!(started.elapsed() < config.request_timeout + Duration::from_millis(500));
        mesh.heal(WAIT).await.unwrap();
        let hits = nodes[0].search(&Query::text("island")).await.unwrap();
        assert_eq!(hits.len(), 1, "found again after healing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_times_out_loses_reputation_and_is_asked_last() {
        // The silent peer never answers: the timeout is provoked, not raced — and long
        // enough that the good peer answers within it on a busy machine: 6 s, what the
        // scenarios give it at the time scale the tests set (scenario 5's good peer once
        // took 2.4 s with every test binary running at once).
        let config = Config {
            search_fanout: 1,
            request_timeout: Duration::from_secs(6),
            ..Config::for_tests()
        };
        let mut mesh = marketplace(2, config.clone()).await;
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        routing_ready(&mesh).await;
        let (_silent, silent_peer) = silent_peer_connected_to_node_0(&mesh, 78).await;
        let nodes = handles(&mesh, &config);
        nodes[1]
            .publish(package("acme/answer", "1.0.0", "Answer"))
            .await
            .unwrap();
        // Fan-out 1: each search asks the best-reputed peer. Unknown peers tie, so within a
        // few searches the silent one is asked, times out, and falls behind for good.
        for _ in 0..4 {
            nodes[0].search(&Query::text("answer")).await.unwrap();
        }
        let stats = nodes[0].stats().await.unwrap();
        let silent_stats = &stats.reputation[&silent_peer];
        let good_stats = &stats.reputation[&mesh.peer_id(1).unwrap()];
        assert_eq!(
            silent_stats.failures, 1,
            "asked once, then avoided: {stats:?}"
        );
        assert!(silent_stats.score() < good_stats.score());
        assert!(good_stats.successes >= 3);
        for peer in stats.reputation.values() {
            assert!(
                (0.0..=1.0).contains(&peer.score()) && (0.0..=1.0).contains(&peer.success_rate())
            );
        }
        let hits = nodes[0].search(&Query::text("answer")).await.unwrap();
        assert_eq!(hits.len(), 1, "found through the peer that answers");
    }

    /// A peer speaking the registry protocol with the wrong message type.
    mod raw_peer {
        use libp2p::request_response::{self, ProtocolSupport};
        use libp2p::{Multiaddr, PeerId, StreamProtocol};
        use p2p_otel_testkit::mesh::{Node, NodeEvent, NodeSwarm};

        pub type Behaviour = request_response::cbor::Behaviour<String, String>;

        pub fn behaviour() -> Behaviour {
            request_response::cbor::Behaviour::new(
                [(
                    StreamProtocol::new(p2p_otel_marketplace::REGISTRY_PROTOCOL),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            )
        }

        #[derive(Default)]
        pub struct RawNode;

        impl Node for RawNode {
            type Behaviour = Behaviour;
            type Command = (PeerId, Multiaddr);
            type Observations = ();
            fn on_swarm_event(&mut self, _: &mut NodeSwarm<Behaviour>, _: NodeEvent<Behaviour>) {}
            fn on_command(
                &mut self,
                swarm: &mut NodeSwarm<Behaviour>,
                (peer, addr): (PeerId, Multiaddr),
            ) {
                swarm.add_peer_address(peer, addr);
                swarm
                    .behaviour_mut()
                    .app
                    .send_request(&peer, "not a registry request".to_owned());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_malformed_request_is_counted_and_the_node_keeps_serving() {
        let config = Config::for_tests();
        let mesh = marketplace(1, config.clone()).await;
        let node = &handles(&mesh, &config)[0];
        // Alone, the DHT quorum cannot be met: a typed error, with the package kept locally.
        let alone = node
            .publish(package("acme/steady", "1.0.0", "Still here"))
            .await
            .unwrap_err();
        assert!(matches!(alone, MarketplaceError::Replication(_)), "{alone}");
        let raw: Mesh<raw_peer::RawNode> = mesh::Builder::new(1)
            .seed(77)
            .security(Security::Plaintext)
            .discovery(Discovery::Open)
            .start(|_| Ok((raw_peer::behaviour(), raw_peer::RawNode)))
            .await
            .unwrap();
        raw.node(0)
            .unwrap()
            .send((mesh.peer_id(0).unwrap(), mesh.addr(0).unwrap()))
            .await
            .unwrap();
        mesh.wait_until("the malformed request to be counted", WAIT, |states| {
            states[0].observations.malformed_messages == 1
        })
        .await
        .unwrap();
        let hits = node.search(&Query::text("steady")).await.unwrap();
        assert_eq!(hits.len(), 1, "still serving");
        assert!(!node.exists(&id("acme/nothing")).await.unwrap());
    }
}

mod scale {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use p2p_otel_testkit::capture::{CaptureHandle, SpanCaptureLayer};
    use p2p_otel_testkit::libp2p::PeerId;
    use p2p_otel_testkit::{SpanRecord, SpanSource, TraceSet};

    use super::*;

    /// How long these meshes of 64 nodes and more may take to connect, get ready and
    /// answer: not tests of timeouts, and on two cores shared with other test binaries
    /// a 64-node connect took over 30 s (2 s idle).
    const LONG: Duration = Duration::from_secs(120);

    /// A marketplace mesh on `topology`, ready, after its first `walkers` nodes have run
    /// a Kademlia bootstrap: the walk that, left to dial what it learns, turns a sparse
    /// mesh into nearly all-to-all.
    async fn bootstrapped(
        nodes: usize,
        topology: Topology,
        discovery: Discovery,
        walkers: usize,
    ) -> Mesh<RegistryNode> {
        // Not a test of timeouts: a 64-node mesh in one process on two busy cores takes
        // ten times its idle time, so its lookups get four times production's 30 s.
        let config = Config {
            query_timeout: LONG,
            ..Config::for_tests()
        };
        let node_config = config.clone();
        let mut mesh = mesh::Builder::new(nodes)
            .seed(15)
            .security(Security::Plaintext)
            .discovery(discovery)
            .timeout(LONG)
            .start(marketplace::node_constructor(move |_| node_config.clone()))
            .await
            .unwrap();
        mesh.connect_topology(topology, LONG).await.unwrap();
        marketplace::wait_ready(&mesh, LONG).await.unwrap();
        let walks = handles(&mesh, &config);
        let walks = &walks[..walkers];
        for (index, outcome) in futures::future::join_all(walks.iter().map(|n| n.bootstrap()))
            .await
            .into_iter()
            .enumerate()
        {
            outcome.unwrap_or_else(|e| panic!("node {index} bootstrap: {e}"));
        }
        mesh
    }

    /// Each node's neighbours in `topology`, by index.
    fn neighbours(mesh: &Mesh<RegistryNode>, topology: Topology) -> Vec<BTreeSet<PeerId>> {
        let peers = mesh.peer_ids();
        let mut neighbours = vec![BTreeSet::new(); mesh.len()];
        for (a, b) in topology.edges(mesh.len()) {
            neighbours[a].insert(peers[b]);
            neighbours[b].insert(peers[a]);
        }
        neighbours
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_64_node_random_mesh_every_node_keeps_exactly_its_neighbours() {
        let topology = Topology::Random {
            degree: 4,
            seed: 64,
        };
        // A quarter of the nodes walk: each walk dials every peer it hears of, so 16
        // walkers try every node many times over — and 64 at once (2 s idle, 22 s with
        // the cores busy) reached the 30 s query timeout in the concurrent soak.
        let mesh = bootstrapped(64, topology, Discovery::Off, 16).await;
        let expected = neighbours(&mesh, topology);
        for state in mesh.states() {
            assert_eq!(
                state.connected,
                expected[state.index],
                "node {} is connected to {} peers, its topology gives it {}",
                state.index,
                state.connected.len(),
                expected[state.index].len()
            );
        }
        mesh.shutdown().await;
    }

    /// The same mesh with discovery open: Kademlia's own bootstrap (it runs whenever a
    /// node's table holds fewer than 20 peers) connects nodes the topology did not — what
    /// the test above would see if the mesh stopped holding nodes to their edges.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_discovery_open_kademlia_connects_beyond_the_topology() {
        let topology = Topology::Random {
            degree: 4,
            seed: 64,
        };
        let mesh = bootstrapped(64, topology, Discovery::Open, 0).await;
        let expected = neighbours(&mesh, topology);
        let states = mesh
            .wait_until(
                "Kademlia to connect a node beyond its edges",
                LONG,
                |states| {
                    states
                        .iter()
                        .any(|s| !s.connected.is_subset(&expected[s.index]))
                },
            )
            .await
            .unwrap();
        let connections: usize = states.iter().map(|s| s.connected.len()).sum();
        let edges: usize = expected.iter().map(BTreeSet::len).sum();
        assert!(
            connections > edges,
            "{connections} connection ends for {edges} edge ends"
        );
        mesh.shutdown().await;
    }

    /// 1,024 nodes in a release build; 128 in a debug one (`cargo test`), where 1,024
    /// take minutes: `cargo test --release -p p2p-otel-marketplace --test marketplace
    /// large_mesh -- --nocapture` runs the full size (about 35 s) and prints its figures.
    const NODES: usize = if cfg!(debug_assertions) { 128 } else { 1024 };

    /// Publish on node 0 of a large random mesh, found by a search on the middle node;
    /// half the mesh cut off and healed (a publish during the cut stays on its side, one
    /// after the heal crosses it); the publish and search traces complete and
    /// parented across nodes. Every node captures its spans in-process (a thousand OTLP
    /// pipelines would measure the exporters, not the mesh).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_mesh_publishes_searches_partitions_and_heals() {
        let started = Instant::now();
        let captures: Arc<Mutex<Vec<Option<CaptureHandle>>>> =
            Arc::new(Mutex::new(vec![None; NODES]));
        let kept = Arc::clone(&captures);
        let config = Config::for_tests();
        let mut mesh = mesh::Builder::new(NODES)
            .seed(1024)
            .dispatch_per_node(move |index, peer| {
                let (dispatch, handle) = SpanCaptureLayer::builder()
                    .resource_attribute("service.instance.id", peer.to_string())
                    .dispatch();
                kept.lock().unwrap()[index] = Some(handle);
                Ok(dispatch)
            })
            .timeout(LONG)
            .start(marketplace::node_constructor(move |_| config.clone()))
            .await
            .unwrap();
        let topology = Topology::Random {
            degree: 4,
            seed: 1024,
        };
        mesh.connect_topology(topology, LONG).await.unwrap();
        marketplace::wait_ready(&mesh, LONG).await.unwrap();
        let ready = started.elapsed();
        let config = Config::for_tests();
        let publisher = marketplace::registry(&mesh, 0, &config).unwrap();
        // The middle node searches, and publishes on its side once the partition heals.
        let searcher = marketplace::registry(&mesh, NODES / 2, &config).unwrap();

        publisher
            .publish(package("scale/first", "1.0.0", "Across a thousand nodes"))
            .await
            .unwrap();
        mesh.wait_until("every node to index the package", LONG, |states| {
            states.iter().all(|s| s.observations.packages == 1)
        })
        .await
        .unwrap();
        let hits = searcher.search(&Query::text("scale/first")).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");

        let (low, high): (Vec<usize>, Vec<usize>) = (0..NODES).partition(|i| *i < NODES / 2);
        mesh.partition(&[&low, &high], LONG).await.unwrap();
        publisher
            .publish(package("scale/cut-off", "1.0.0", "One half only"))
            .await
            .unwrap();
        mesh.wait_until("the publisher's half to index it", LONG, |states| {
            low.iter().all(|&i| states[i].observations.packages == 2)
        })
        .await
        .unwrap();
        let states = mesh.states();
        let crossed: Vec<usize> = high
            .iter()
            .copied()
            .filter(|&i| states[i].observations.packages != 1)
            .collect();
        assert!(crossed.is_empty(), "the partition leaked to {crossed:?}");
        // After the heal a package published on the far side must reach the publisher's
        // half: those nodes hold exactly two packages, so a third can only be this one
        // (the cut-off package may still reach the far side through gossip, which is why
        // the check does not run the other way).
        mesh.heal(LONG).await.unwrap();
        searcher
            .publish(package("scale/healed", "1.0.0", "After the heal"))
            .await
            .unwrap();
        mesh.wait_until(
            "the publisher's half to index the healed package",
            LONG,
            |states| low.iter().all(|&i| states[i].observations.packages == 3),
        )
        .await
        .unwrap();
        let hits = publisher
            .search(&Query::text("scale/healed"))
            .await
            .unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");

        // A reply can reach the caller before its node closes the operation's span:
        // wait for the spans themselves, on the nodes that emit them.
        let captures: Vec<CaptureHandle> =
            captures.lock().unwrap().iter().flatten().cloned().collect();
        for (node, publishes) in [(0, 2), (NODES / 2, 1)] {
            captures[node]
                .wait_until("its publishes and its search", LONG, move |spans| {
                    let count = |name| spans.iter().filter(|s| s.name == name).count();
                    count("p2p_publish") == publishes && count("p2p_search") == 1
                })
                .await
                .unwrap();
        }
        let peers = mesh.peer_ids();
        let traces = TraceSet::new(captures.iter().flat_map(CaptureHandle::spans));
        let publishes = traces.find_named("p2p_publish");
        let searches = traces.find_named("p2p_search");
        assert_eq!((publishes.len(), searches.len()), (3, 2));
        for root in &publishes {
            assert!(root.trace().is_complete(), "a publish trace has orphans");
            assert!(root.parent().is_none(), "p2p_publish is a root");
        }
        let mut handled = 0;
        for search in &searches {
            assert!(search.parent().is_none(), "p2p_search is a root");
            for request in search.children() {
                if request.name() != "send_request" {
                    continue;
                }
                // The handler runs on the node asked; wait for its span there.
                let target = request
                    .attribute("target_peer")
                    .and_then(|v| v.as_str())
                    .and_then(|peer| peers.iter().position(|p| p.to_string() == peer))
                    .expect("send_request names a node of the mesh");
                let caller = request.record().span_id;
                let answers_caller = move |s: &SpanRecord| {
                    s.name == "handle_dht_query"
                        && s.parent.as_ref().is_some_and(|p| p.span_id == caller)
                };
                let on_target = captures[target]
                    .wait_until("the handler's span", LONG, move |spans| {
                        spans.iter().any(answers_caller)
                    })
                    .await
                    .unwrap();
                let handler = on_target
                    .spans()
                    .find(|s| answers_caller(s.record()))
                    .expect("waited for it");
                let record = handler.record();
                assert_eq!(
                    record.parent.as_ref().and_then(|p| p.remote),
                    Some(true),
                    "a handler's parent is the caller's span, on another node"
                );
                assert_ne!(record.resource, search.record().resource, "another node");
                handled += 1;
            }
        }
        assert!(handled > 0, "the searches asked their neighbours");
        eprintln!(
            "{NODES} nodes: ready in {:.1} s, whole run {:.1} s, {} spans captured",
            ready.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            traces.span_count()
        );
        mesh.shutdown().await;
    }
}

/// libp2p's timers on tokio's clock (the workspace's virtual-time patch of futures-timer
/// and web-time): the first brick of simulated meshes.
mod virtual_time {
    use super::*;

    use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{PeerId, StreamProtocol};
    use p2p_otel_testkit::mesh::{MeshBehaviourEvent, Node, NodeEvent, NodeSwarm};

    type Behaviour = request_response::cbor::Behaviour<String, String>;

    /// Asks on command; answers nothing (keeps every response channel). What it saw of
    /// its request: how it failed, and after how long on tokio's clock.
    #[derive(Default)]
    struct Peer {
        sent_at: Option<tokio::time::Instant>,
        failed: Option<(String, Duration)>,
        kept: Vec<ResponseChannel<String>>,
    }

    impl Node for Peer {
        type Behaviour = Behaviour;
        type Command = PeerId;
        type Observations = Option<(String, Duration)>;

        fn on_swarm_event(&mut self, _: &mut NodeSwarm<Behaviour>, event: NodeEvent<Behaviour>) {
            match event {
                SwarmEvent::Behaviour(MeshBehaviourEvent::App(
                    request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    },
                )) => self.kept.push(channel),
                SwarmEvent::Behaviour(MeshBehaviourEvent::App(
                    request_response::Event::OutboundFailure { error, .. },
                )) => {
                    let elapsed = self.sent_at.map(|at| at.elapsed()).unwrap_or_default();
                    self.failed = Some((format!("{error:?}"), elapsed));
                }
                _ => {}
            }
        }

        fn on_command(&mut self, swarm: &mut NodeSwarm<Behaviour>, peer: PeerId) {
            self.sent_at = Some(tokio::time::Instant::now());
            swarm
                .behaviour_mut()
                .app
                .send_request(&peer, "anyone?".to_owned());
        }

        fn observe(&self, _: &NodeSwarm<Behaviour>, observations: &mut Self::Observations) {
            observations.clone_from(&self.failed);
        }
    }

    /// libp2p's own request timeout — a `futures_timer::Delay` inside request-response's
    /// handler, no marketplace logic — fires after exactly its 10 s of virtual time on a
    /// paused clock, in a few milliseconds of wall time. Without the patch that timer runs
    /// on futures-timer's thread in real time, while the paused clock jumps to the wait's
    /// own 30 s deadline: the wait fails.
    #[tokio::test(start_paused = true)]
    async fn libp2ps_own_request_timeout_fires_in_virtual_time() {
        const TIMEOUT: Duration = Duration::from_secs(10);
        let mut mesh = mesh::Builder::new(2)
            .seed(80)
            .security(Security::Plaintext)
            .start(|_| {
                let behaviour = request_response::cbor::Behaviour::new(
                    [(
                        StreamProtocol::new("/virtual-time/1"),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default().with_request_timeout(TIMEOUT),
                );
                Ok((behaviour, Peer::default()))
            })
            .await
            .unwrap();
        mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
        let wall = Instant::now();
        mesh.node(0)
            .unwrap()
            .send(mesh.peer_id(1).unwrap())
            .await
            .unwrap();
        let states = mesh
            .wait_until("the request to time out", WAIT, |states| {
                states[0].observations.is_some()
            })
            .await
            .unwrap();
        let (error, elapsed) = states[0].observations.clone().unwrap();
        assert_eq!(error, "Timeout");
        assert_eq!(
            elapsed, TIMEOUT,
            "{error} after {elapsed:?} of virtual time"
        );
        eprintln!(
            "libp2p's {TIMEOUT:?} request timeout: {elapsed:?} virtual, {:?} wall",
            wall.elapsed()
        );
        mesh.shutdown().await;
    }

    /// On a paused clock, a search that asks a silent peer fails at exactly production's
    /// 10 s request timeout of virtual time (scenario 5's wait), costing no wall time: the
    /// clock moves only when every task is idle.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_at_exactly_the_request_timeout_of_virtual_time() {
        let config = Config {
            search_fanout: 1,
            ..Config::for_tests()
        };
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        let mesh = marketplace(1, config.clone()).await;
        let (silent, silent_peer) = silent_peer_connected_to_node_0(&mesh, 79).await;
        let node = marketplace::registry(&mesh, 0, &config).unwrap();
        let wall = Instant::now();
        let virtual_start = tokio::time::Instant::now();
        let hits = node.search(&Query::text("answer")).await;
        let virtual_elapsed = virtual_start.elapsed();
        let stats = node.stats().await.unwrap();
        assert_eq!(
            stats.reputation[&silent_peer].failures, 1,
            "the silent peer was asked and timed out: {hits:?} {stats:?}"
        );
        assert!(
            virtual_elapsed >= config.request_timeout
                && virtual_elapsed < config.request_timeout + Duration::from_millis(50),
            "the search ended {virtual_elapsed:?} of virtual time after it began, not at the \
             {:?} request timeout: {hits:?}",
            config.request_timeout
        );
        eprintln!(
            "a {:?} timeout in virtual time: {virtual_elapsed:?} virtual, {:?} wall",
            config.request_timeout,
            wall.elapsed()
        );
        silent.shutdown().await;
        mesh.shutdown().await;
    }
}

/// The marketplace itself on a simulated mesh: how far virtual time, seeded identities and a
/// fixed event order already carry its protocols (Kademlia, gossipsub, request-response).
mod simulated {
    use super::*;
    use p2p_otel_testkit::capture;

    /// Three marketplace nodes over 20 ms edges on a paused clock, a publish and a search;
    /// the spans' timeline in virtual nanoseconds (node, name, start, end).
    fn publish_and_search(seed: u64) -> String {
        publish_and_search_on(3, Topology::Full, seed)
    }

    /// `n` marketplace nodes connected along `topology`, the same run.
    fn publish_and_search_on(n: usize, topology: Topology, seed: u64) -> String {
        mesh::simulate(seed, move || async move {
            let origin = tokio::time::Instant::now();
            let captures = capture::PerNode::with_builder(
                p2p_otel_testkit::SpanCaptureLayer::builder().virtual_time(origin),
            );
            let config = Config::for_tests();
            let node_config = config.clone();
            let mut mesh = mesh::Builder::new(n)
                .seed(seed)
                .security(Security::Plaintext)
                .latency(Duration::from_millis(20))
                .capture_per_node(&captures)
                .start(marketplace::node_constructor(move |_| node_config.clone()))
                .await
                .unwrap();
            mesh.connect_topology(topology, WAIT).await.unwrap();
            marketplace::wait_ready(&mesh, WAIT).await.unwrap();
            let nodes = handles(&mesh, &config);
            nodes[0]
                .publish(package("acme/sim", "1.0.0", "Simulated"))
                .await
                .unwrap();
            indexed(&mesh, &(0..n).collect::<Vec<_>>(), 1).await;
            let hits = nodes[n - 1]
                .search(&Query::text("simulated"))
                .await
                .unwrap();
            assert_eq!(hits.len(), 1);
            let mut timeline = captures.timeline();
            timeline.push_str(&format!("{:?}\n", mesh.peer_ids()));
            mesh.shutdown().await;
            timeline
        })
        .unwrap()
    }

    /// Same seed, same timeline byte for byte — virtual start and end of every span, from
    /// gossip's one-way delivery (20 ms) to the DHT write's round trips — in one process
    /// or another; another seed, other peer ids. When two runs part, the first line that
    /// differs is named.
    #[test]
    fn a_publish_and_a_search_replay_for_the_same_seed() {
        let first = publish_and_search(11);
        assert!(
            first.contains("1767225600140000000 1767225600140000000 [node 0] gossipsub_announce"),
            "the publish at 140 virtual ms, after the mesh was ready:\n{first}"
        );
        let second = publish_and_search(11);
        if let Some(parted) = scenarios::first_divergence(&first, &second) {
            panic!("{parted}\n{first}\n--- second run:\n{second}");
        }
        assert_eq!(first, second);
        assert_ne!(first, publish_and_search(12));
        eprintln!("{first}");
    }

    /// The same publish and search on random degree-4 meshes of 8 to 64 nodes, twice each
    /// in one process: the same timeline byte for byte. Gossipsub picks mesh and gossip
    /// peers by shuffling candidates taken from a hash map, so this needs the simulation's
    /// hash keys and random draws from its seed (`mesh::simulate`) and every stopped node's
    /// memory-transport port given back (or the next run draws a taken port and another).
    #[test]
    fn meshes_of_8_to_64_nodes_replay_byte_for_byte() {
        let topology = Topology::Random { degree: 4, seed: 1 };
        for n in [8, 16, 32, 64] {
            let first = publish_and_search_on(n, topology, 11);
            let again = publish_and_search_on(n, topology, 11);
            if let Some(parted) = scenarios::first_divergence(&first, &again) {
                panic!("{n} nodes: {parted}\n{first}\n--- again:\n{again}");
            }
            assert_eq!(first, again, "{n} nodes");
        }
    }
}
