//! Data-driven placement cases: a list of agents (as heartbeats) and a script of steps, each
//! with what must happen, run through one `check` helper.

use super::*;
use fresco_common::wire::WarmPool;

const DOWN_AFTER: u64 = 10;
const LEASE_EXTRA: u64 = 35;

/// One agent's heartbeat: id, total MB, reserved MB, warm pools `(function, idle, busy, MB)`.
struct A(&'static str, i64, i64, &'static [(u8, u32, u32, i32)]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Placed on this agent, warm or cold.
    On(&'static str, bool),
    /// 503: no agent has room.
    Full,
    /// 429: concurrency limit.
    Busy,
    /// 429: rate limit, with this Retry-After.
    Rate(u64),
}

enum Step {
    /// Place function `f` with `mb` MB for project "p" (limits from the case).
    Place(u8, i32, Expect),
    /// Place for another project.
    PlaceFor(&'static str, u8, i32, Expect),
    /// Release the n-th granted lease (0-based), warm or not.
    Release(usize, bool),
    /// Let time pass.
    Wait(u64),
    /// A new heartbeat from one agent.
    Beat(A),
    /// Run the sweep; expect these agents to go down and this many leases to expire.
    Sweep(&'static [&'static str], usize),
    /// The agent's free memory.
    Free(&'static str, i64),
    /// Function `f` is retired (every version), as the retirement log reports it.
    Retire(u8),
    /// A heartbeat from an agent that has yet to apply the retirement of function `f`.
    BeatRetiring(A, u8),
}

fn retired(f: u8) -> fresco_common::wire::RetiredKey {
    fresco_common::wire::RetiredKey {
        seq: i64::from(f),
        function_id: function(f),
        version: None,
        below_revision: None,
    }
}

fn function(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn heartbeat(a: &A) -> Heartbeat {
    Heartbeat {
        agent_id: a.0.into(),
        host: a.0.into(),
        url: format!("http://{}", a.0),
        memory_mb_total: a.1,
        memory_mb_reserved: a.2,
        cpus: 2,
        running: 0,
        warm: a
            .3
            .iter()
            .map(|&(f, idle, busy, memory_mb)| WarmPool {
                key: format!("{}:0", function(f)),
                idle,
                busy,
                memory_mb,
            })
            .collect(),
        images: vec![],
        version: "test".into(),
        engine_down: false,
        retired_seq: None,
        prewarmed: Vec::new(),
    }
}

/// Runs a case: the agents beat at t0, then the steps run in order.
fn check(concurrent: i64, per_minute: i64, agents: &[A], steps: &[Step]) {
    let placer = Placer::new(PlacerConfig {
        agent_down_after: Duration::from_secs(DOWN_AFTER),
        persist_interval: Duration::from_secs(1),
        lease_extra: Duration::from_secs(LEASE_EXTRA),
    });
    let mut now = Instant::now();
    for a in agents {
        placer.heartbeat(&heartbeat(a), now);
    }
    let mut leases = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Place(f, mb, expected) | Step::PlaceFor(_, f, mb, expected) => {
                let project = match step {
                    Step::PlaceFor(p, ..) => p,
                    _ => "p",
                };
                let demand = Demand {
                    project_id: project,
                    image: "",
                    function_id: function(*f),
                    version: 0,
                    memory_mb: *mb,
                    timeout_s: 5,
                    concurrent_limit: concurrent,
                    per_minute_limit: per_minute,
                };
                let got = match placer.place(&demand, now) {
                    Ok(lease) => {
                        let agent: &'static str = agents
                            .iter()
                            .map(|a| a.0)
                            .find(|id| **id == *lease.agent_id)
                            .expect("a known agent");
                        leases.push(lease.lease_id);
                        Expect::On(agent, lease.warm)
                    }
                    Err(PlaceError::NoCapacity { .. }) => Expect::Full,
                    Err(PlaceError::Concurrency { .. }) => Expect::Busy,
                    Err(PlaceError::Rate { retry_after_s, .. }) => Expect::Rate(retry_after_s),
                };
                assert_eq!(got, *expected, "step {i}");
            }
            Step::Release(n, warm) => {
                assert!(placer.release(leases[*n], *warm).is_some(), "step {i}");
                assert!(
                    placer.release(leases[*n], *warm).is_none(),
                    "step {i}: twice"
                );
            }
            Step::Wait(s) => now += Duration::from_secs(*s),
            Step::Beat(a) => {
                placer.heartbeat(&heartbeat(a), now);
            }
            Step::Sweep(down, expired) => {
                let (went_down, ended) = placer.sweep(now);
                let went_down: Vec<&str> = went_down.iter().map(|a| &**a).collect();
                assert_eq!(went_down, *down, "step {i}");
                assert_eq!(ended.len(), *expired, "step {i}");
            }
            Step::Retire(f) => {
                placer.retire(&[retired(*f)]);
            }
            Step::BeatRetiring(a, f) => {
                placer.heartbeat_retiring(&heartbeat(a), now, &[retired(*f)]);
            }
            Step::Free(agent, mb) => {
                let view = placer.agent(agent).expect("known agent");
                assert_eq!(view.free_mb, *mb, "step {i}: free memory of {agent}");
            }
        }
    }
}

use Expect::*;
use Step::*;

#[test]
fn bin_packing_fills_the_fullest_agent_that_fits() {
    check(
        -1,
        -1,
        &[A("a", 1024, 0, &[]), A("b", 1024, 512, &[])],
        &[
            Place(1, 256, On("b", false)),
            Place(1, 256, On("b", false)),
            Free("b", 0),
            Place(1, 256, On("a", false)),
            Place(2, 900, Full),
            Place(2, 768, On("a", false)),
            Place(2, 1, Full),
        ],
    );
}

#[test]
fn agents_without_room_are_skipped() {
    check(
        -1,
        -1,
        &[A("a", 1024, 900, &[]), A("b", 2048, 0, &[])],
        &[Place(1, 256, On("b", false)), Place(1, 124, On("a", false))],
    );
}

#[test]
fn warm_containers_first_and_leased_ones_are_not_reused() {
    check(
        -1,
        -1,
        &[A("a", 1024, 0, &[]), A("b", 1024, 512, &[(1, 1, 0, 128)])],
        &[
            // The idle container on b, although a is the emptier agent.
            Place(1, 128, On("b", true)),
            // Claiming it takes no new memory.
            Free("b", 512),
            // The only idle container is leased: cold, bin-packed onto b.
            Place(1, 128, On("b", false)),
            Free("b", 384),
            // Another function: cold.
            Place(2, 128, On("b", false)),
        ],
    );
}

#[test]
fn retired_function_versions_lose_their_warm_affinity() {
    check(
        -1,
        -1,
        &[A("a", 1024, 0, &[]), A("b", 1024, 256, &[(1, 2, 0, 128)])],
        &[
            Place(1, 128, On("b", true)),
            // The agent destroys its idle containers of f1 when it hears: no warm placement.
            Retire(1),
            Place(1, 128, On("b", false)),
            // A lease in flight at the retirement does not make its container warm again.
            Release(0, true),
            Place(1, 128, On("b", false)),
            // The agent reports the idle container before it applied the retirement.
            BeatRetiring(A("b", 1024, 384, &[(1, 1, 1, 128)]), 1),
            Place(1, 128, On("b", false)),
            // Once applied, what it reports is of the current state again.
            Beat(A("b", 1024, 384, &[(1, 1, 1, 128)])),
            Place(1, 128, On("b", true)),
            // Other functions keep theirs.
            Beat(A("a", 1024, 128, &[(2, 1, 0, 128)])),
            Retire(1),
            Place(2, 128, On("a", true)),
        ],
    );
}

#[test]
fn warm_ties_spread_over_agents() {
    check(
        -1,
        -1,
        &[
            A("a", 1024, 256, &[(1, 2, 0, 128)]),
            A("b", 1024, 256, &[(1, 2, 0, 128)]),
        ],
        &[
            Place(1, 128, On("a", true)),
            Place(1, 128, On("b", true)),
            Place(1, 128, On("a", true)),
            Place(1, 128, On("b", true)),
            // Four idle containers, four leases: the next one is cold.
            Place(1, 128, On("a", false)),
        ],
    );
}

#[test]
fn a_heartbeat_reflects_leases_and_releases_return_containers() {
    check(
        -1,
        -1,
        &[A("a", 1024, 128, &[(1, 1, 0, 128)])],
        &[
            Place(1, 128, On("a", true)),
            Free("a", 896),
            // The agent now runs it: busy, not idle.
            Wait(1),
            Beat(A("a", 1024, 128, &[(1, 0, 1, 128)])),
            Free("a", 896),
            Place(1, 128, On("a", false)),
            Free("a", 768),
            // Both end warm: two idle containers before the next heartbeat says so.
            Release(0, true),
            Release(1, true),
            Free("a", 768),
            Place(1, 128, On("a", true)),
            Place(1, 128, On("a", true)),
            Place(1, 128, On("a", false)),
            Free("a", 640),
        ],
    );
}

#[test]
fn a_container_released_cold_frees_its_memory() {
    check(
        -1,
        -1,
        &[A("a", 512, 0, &[])],
        &[
            Place(1, 512, On("a", false)),
            Place(2, 128, Full),
            Release(0, false),
            Free("a", 512),
            Place(2, 128, On("a", false)),
        ],
    );
}

#[test]
fn memory_is_never_below_what_the_agent_reports() {
    check(
        -1,
        -1,
        // The agent holds 1000 MB in containers it did not list (e.g. after a takeover).
        &[A("a", 1024, 1000, &[])],
        &[Free("a", 24), Place(1, 128, Full)],
    );
}

#[test]
fn concurrency_limit_per_project() {
    check(
        2,
        -1,
        &[A("a", 4096, 0, &[])],
        &[
            Place(1, 128, On("a", false)),
            Place(1, 128, On("a", false)),
            Place(1, 128, Busy),
            // Another project has its own count.
            PlaceFor("q", 1, 128, On("a", false)),
            Release(0, true),
            Place(1, 128, On("a", true)),
            Place(1, 128, Busy),
        ],
    );
}

#[test]
fn refused_placements_do_not_count_against_the_rate() {
    check(
        -1,
        2,
        &[A("a", 256, 0, &[])],
        &[
            Place(1, 512, Full),
            Place(1, 128, On("a", false)),
            Place(1, 128, On("a", false)),
            Place(1, 128, Rate(90)),
            Wait(60),
            // A minute later the previous minute still weighs fully.
            Place(1, 1, Rate(30)),
        ],
    );
}

#[test]
fn down_agents_get_nothing_and_come_back_with_a_heartbeat() {
    check(
        -1,
        -1,
        &[A("a", 1024, 0, &[(1, 1, 0, 128)]), A("b", 1024, 0, &[])],
        &[
            Wait(5),
            Beat(A("b", 1024, 0, &[])),
            Wait(5),
            Sweep(&["a"], 0),
            Sweep(&[], 0),
            // The warm container on a is out of reach.
            Place(1, 128, On("b", false)),
            Beat(A("a", 1024, 0, &[(1, 1, 0, 128)])),
            Place(1, 128, On("a", true)),
        ],
    );
}

#[test]
fn leases_expire_on_their_own() {
    check(
        1,
        -1,
        &[A("a", 1024, 0, &[])],
        &[
            Place(1, 1024, On("a", false)),
            Place(1, 1024, Busy),
            // Timeout 5 s + 35 s: not yet at 39 s.
            Wait(39),
            Sweep(&["a"], 0),
            Beat(A("a", 1024, 0, &[])),
            Place(1, 1024, Busy),
            Wait(1),
            Sweep(&[], 1),
            Free("a", 1024),
            Place(1, 1024, On("a", false)),
        ],
    );
}

#[test]
fn mark_down_is_immediate() {
    let placer = Placer::new(PlacerConfig {
        agent_down_after: Duration::from_secs(DOWN_AFTER),
        persist_interval: Duration::from_secs(1),
        lease_extra: Duration::from_secs(LEASE_EXTRA),
    });
    let now = Instant::now();
    let first = placer.heartbeat(&heartbeat(&A("a", 1024, 0, &[])), now);
    assert_eq!(
        first,
        HeartbeatOutcome {
            persist: true,
            came_up: true
        }
    );
    let again = placer.heartbeat(&heartbeat(&A("a", 1024, 0, &[])), now);
    assert!(!again.persist && !again.came_up, "throttled: {again:?}");
    let later = placer.heartbeat(
        &heartbeat(&A("a", 1024, 0, &[])),
        now + Duration::from_secs(1),
    );
    assert!(later.persist, "after the persist interval");
    assert!(placer.mark_down("a"));
    assert!(!placer.mark_down("a"), "already down");
    assert!(!placer.is_up("a"));
    let demand = Demand {
        project_id: "p",
        image: "",
        function_id: function(1),
        version: 0,
        memory_mb: 1,
        timeout_s: 1,
        concurrent_limit: -1,
        per_minute_limit: -1,
    };
    assert_eq!(
        placer.place(&demand, now).map(|l| l.lease_id).err(),
        Some(PlaceError::NoCapacity {
            memory_mb: 1,
            paused: 0
        })
    );
    let back = placer.heartbeat(&heartbeat(&A("a", 1024, 0, &[])), now);
    assert!(
        back.came_up && back.persist,
        "a state change is persisted at once"
    );
    assert!(placer.place(&demand, now).is_ok());
    assert_eq!(placer.in_flight("p"), 1);
    assert_eq!(placer.lease_count(), 1);
}

#[test]
fn idle_containers_are_evicted_only_when_nothing_else_fits() {
    check(
        -1,
        -1,
        &[A("a", 1024, 1024, &[(1, 8, 0, 128)]), A("b", 512, 256, &[])],
        &[
            // b fits without evicting anything, although a is fuller.
            Place(2, 256, On("b", false)),
            // b is full: a evicts idle containers.
            Place(2, 256, On("a", false)),
            Free("a", -256),
            // The idle containers left are still warm.
            Place(1, 128, On("a", true)),
            // a: 7 idle unclaimed (896 MB) - 256 MB over = 640 MB of room.
            Place(3, 1024, Full),
            Place(3, 640, On("a", false)),
            Place(3, 1, Full),
        ],
    );
}

#[test]
fn paused_agents_and_agents_without_an_engine_get_no_work() {
    let placer = Placer::new(PlacerConfig {
        agent_down_after: Duration::from_secs(DOWN_AFTER),
        persist_interval: Duration::from_secs(1),
        lease_extra: Duration::from_secs(LEASE_EXTRA),
    });
    let now = Instant::now();
    let demand = Demand {
        project_id: "p",
        image: "",
        function_id: function(1),
        version: 0,
        memory_mb: 128,
        timeout_s: 1,
        concurrent_limit: -1,
        per_minute_limit: -1,
    };
    let place = || placer.place(&demand, now).map(|l| l.agent_id.to_string());
    // "a" is fuller, so bin-packing prefers it.
    placer.heartbeat(&heartbeat(&A("a", 1024, 512, &[])), now);
    placer.heartbeat(&heartbeat(&A("b", 1024, 0, &[])), now);
    assert_eq!(place().as_deref(), Ok("a"));

    // A refusal pauses "a" until its next heartbeat: up (its work goes on), but no placements.
    assert!(placer.pause("a"));
    assert!(!placer.pause("a"), "already paused");
    let view = placer.agent("a").expect("known");
    assert!(view.up && view.paused, "{view:?}");
    assert_eq!(place().as_deref(), Ok("b"));
    placer.heartbeat(&heartbeat(&A("a", 1024, 512, &[])), now);
    assert_eq!(place().as_deref(), Ok("a"));

    // An agent whose engine is down says so in its heartbeats: nothing goes there until it
    // reports its engine back.
    let mut down = heartbeat(&A("a", 1024, 512, &[]));
    down.engine_down = true;
    placer.heartbeat(&down, now);
    placer.heartbeat(&down, now);
    assert_eq!(place().as_deref(), Ok("b"));
    down.engine_down = false;
    placer.heartbeat(&down, now);
    assert_eq!(place().as_deref(), Ok("a"));

    // With every engine down there is no capacity.
    for id in ["a", "b"] {
        let mut beat = heartbeat(&A(id, 1024, 0, &[]));
        beat.engine_down = true;
        placer.heartbeat(&beat, now);
    }
    let refused = placer.place(&demand, now).expect_err("no engine anywhere");
    assert_eq!(
        refused,
        PlaceError::NoCapacity {
            memory_mb: 128,
            paused: 2
        }
    );
    assert!(
        refused.to_string().contains("container engine unavailable"),
        "{refused}"
    );
}

// --- Grants -----------------------------------------------------------------------------------

fn placer() -> Placer {
    Placer::new(PlacerConfig {
        agent_down_after: Duration::from_secs(DOWN_AFTER),
        persist_interval: Duration::from_secs(1),
        lease_extra: Duration::from_secs(LEASE_EXTRA),
    })
}

fn demand(concurrent: i64, per_minute: i64, memory_mb: i32) -> Demand<'static> {
    Demand {
        project_id: "p",
        image: "",
        function_id: function(1),
        version: 0,
        memory_mb,
        timeout_s: 3,
        concurrent_limit: concurrent,
        per_minute_limit: per_minute,
    }
}

const TTL: Duration = Duration::from_secs(10);

#[test]
fn grants_never_exceed_the_project_concurrency() {
    let t0 = Instant::now();
    let placer = placer();
    placer.heartbeat(&heartbeat(&A("a1", 10_000, 0, &[])), t0);
    placer.heartbeat(&heartbeat(&A("a2", 10_000, 0, &[])), t0);
    // Two holders (API replicas) ask for 4 slots each under a concurrency of 5.
    let first = placer
        .grant(&demand(5, -1, 128), 4, 1000, TTL, t0)
        .expect("grant");
    assert_eq!(first.slots, 4);
    let second = placer
        .grant(&demand(5, -1, 128), 4, 1000, TTL, t0)
        .expect("grant");
    assert_eq!(second.slots, 1, "only the headroom");
    assert_eq!(placer.in_flight("p"), 5);
    assert!(matches!(
        placer.grant(&demand(5, -1, 128), 4, 1000, TTL, t0),
        Err(PlaceError::Concurrency { limit: 5, .. })
    ));
    assert!(matches!(
        placer.place(&demand(5, -1, 128), t0),
        Err(PlaceError::Concurrency { .. })
    ));
    // A grant is not a lease: releasing its id does nothing.
    assert!(placer.release(first.grant_id, true).is_none());
    assert_eq!(placer.in_flight("p"), 5);
    // Returned, its slots are free again; returned twice, nothing more.
    assert!(placer.return_grant(first.grant_id, Some(0), t0).is_some());
    assert!(placer.return_grant(first.grant_id, Some(0), t0).is_none());
    assert_eq!(placer.in_flight("p"), 1);
    let lease = placer.place(&demand(5, -1, 128), t0).expect("room again");
    assert!(
        placer.return_grant(lease.lease_id, None, t0).is_none(),
        "a lease is not a grant"
    );
}

#[test]
fn grant_slots_are_bounded_by_agent_memory_and_counted_in_it() {
    let t0 = Instant::now();
    let placer = placer();
    placer.heartbeat(&heartbeat(&A("a1", 1000, 0, &[])), t0);
    let grant = placer
        .grant(&demand(-1, -1, 300), 8, 1000, TTL, t0)
        .expect("grant");
    assert_eq!(grant.slots, 3, "three of 300 MB fit in 1000 MB");
    assert_eq!(placer.agent("a1").expect("agent").free_mb, 100);
    assert!(matches!(
        placer.place(&demand(-1, -1, 300), t0),
        Err(PlaceError::NoCapacity { .. })
    ));
    placer
        .return_grant(grant.grant_id, None, t0)
        .expect("returned");
    assert_eq!(placer.agent("a1").expect("agent").free_mb, 1000);
}

#[test]
fn grant_budgets_count_against_the_rate_and_unused_ones_come_back() {
    let t0 = Instant::now();
    let placer = placer();
    placer.heartbeat(&heartbeat(&A("a1", 10_000, 0, &[])), t0);
    let grant = placer
        .grant(&demand(-1, 10, 128), 2, 8, TTL, t0)
        .expect("grant");
    assert_eq!(grant.invocations, 8);
    let small = placer
        .grant(&demand(-1, 10, 128), 4, 8, TTL, t0)
        .expect("grant");
    assert_eq!(
        (small.invocations, small.slots),
        (2, 2),
        "the rest of the minute"
    );
    assert!(matches!(
        placer.grant(&demand(-1, 10, 128), 1, 1, TTL, t0),
        Err(PlaceError::Rate { limit: 10, .. })
    ));
    // Three of the first grant's eight were used: five come back.
    placer
        .return_grant(grant.grant_id, Some(3), t0)
        .expect("returned");
    let again = placer
        .grant(&demand(-1, 10, 128), 1, 100, TTL, t0)
        .expect("grant");
    assert_eq!(again.invocations, 5);
}

#[test]
fn grants_of_a_dead_holder_expire_with_their_ttl() {
    let t0 = Instant::now();
    let placer = placer();
    placer.heartbeat(&heartbeat(&A("a1", 10_000, 0, &[])), t0);
    let grant = placer
        .grant(&demand(3, -1, 128), 3, 100, TTL, t0)
        .expect("grant");
    assert_eq!(grant.slots, 3);
    assert!(placer.grant(&demand(3, -1, 128), 1, 1, TTL, t0).is_err());
    let (_, expired) = placer.sweep(t0 + TTL - Duration::from_millis(1));
    assert!(expired.is_empty());
    // Keep the agent up across the TTL.
    placer.heartbeat(&heartbeat(&A("a1", 10_000, 0, &[])), t0 + TTL);
    let (_, expired) = placer.sweep(t0 + TTL);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].lease_id, grant.grant_id);
    assert_eq!(placer.in_flight("p"), 0);
    let back = placer
        .grant(&demand(3, -1, 128), 3, 100, TTL, t0 + TTL)
        .expect("grant");
    assert_eq!(back.slots, 3, "the full concurrency is back");
    // A late return of the expired grant changes nothing.
    assert!(placer
        .return_grant(grant.grant_id, Some(0), t0 + TTL)
        .is_none());
    assert_eq!(placer.in_flight("p"), 3);
}

#[test]
fn grants_go_to_warm_containers_first_and_claim_them() {
    let t0 = Instant::now();
    let placer = placer();
    placer.heartbeat(&heartbeat(&A("cold", 10_000, 0, &[])), t0);
    placer.heartbeat(&heartbeat(&A("warm", 1000, 256, &[(1, 2, 0, 128)])), t0);
    let grant = placer
        .grant(&demand(-1, -1, 128), 4, 100, TTL, t0)
        .expect("grant");
    assert!(grant.warm);
    assert_eq!(&*grant.agent_id, "warm");
    assert_eq!(grant.slots, 4, "two idle containers and room for two more");
    // Both idle containers are claimed: the next placement of the function is cold.
    let lease = placer.place(&demand(-1, -1, 128), t0).expect("placed");
    assert!(!lease.warm);
    placer
        .return_grant(grant.grant_id, None, t0)
        .expect("returned");
    // The claims are undone: the idle containers attract work again.
    let lease = placer.place(&demand(-1, -1, 128), t0).expect("placed");
    assert!(lease.warm);
}

// --- Pre-warmed sandboxes and images ------------------------------------------------------------

fn beat_with(
    id: &'static str,
    reserved_mb: i64,
    images: &[&str],
    prewarmed: &[(&str, i32, u32)],
) -> Heartbeat {
    let mut beat = heartbeat(&A(id, 4096, reserved_mb, &[]));
    beat.images = images.iter().map(|i| (*i).to_owned()).collect();
    beat.prewarmed = prewarmed
        .iter()
        .map(
            |&(image, memory_mb, ready)| fresco_common::wire::PrewarmedPool {
                image: image.to_owned(),
                memory_mb,
                ready,
            },
        )
        .collect();
    beat
}

fn place_new(placer: &Placer, image: &str, memory_mb: i32, f: u8, now: Instant) -> String {
    let mut wanted = demand(-1, -1, memory_mb);
    wanted.image = image;
    wanted.function_id = function(f);
    placer
        .place(&wanted, now)
        .expect("placed")
        .agent_id
        .to_string()
}

#[test]
fn cold_placements_prefer_a_prewarmed_sandbox_then_the_image() {
    let t0 = Instant::now();
    let placer = placer();
    // Bin-packing alone would pick "plain" (the least free memory) every time.
    placer.heartbeat(&beat_with("plain", 2048, &[], &[]), t0);
    placer.heartbeat(&beat_with("imaged", 1024, &["py:1"], &[]), t0);
    placer.heartbeat(
        &beat_with(
            "warmed",
            0,
            &["py:1"],
            &[("py:1", 128, 2), ("py:1", 256, 5)],
        ),
        t0,
    );
    assert_eq!(place_new(&placer, "py:1", 128, 1, t0), "warmed");
    assert_eq!(
        place_new(&placer, "py:1", 128, 2, t0),
        "warmed",
        "its second pre-warmed sandbox"
    );
    assert_eq!(
        place_new(&placer, "py:1", 128, 3, t0),
        "imaged",
        "both claimed until the next heartbeat: the fullest agent holding the image"
    );
    assert_eq!(
        place_new(&placer, "py:1", 256, 4, t0),
        "warmed",
        "a pool per memory size"
    );
    assert_eq!(
        place_new(&placer, "py:1", 512, 5, t0),
        "imaged",
        "no pool of that size: the image decides"
    );
    // A heartbeat reports the pool refilled.
    placer.heartbeat(&beat_with("warmed", 0, &["py:1"], &[("py:1", 128, 1)]), t0);
    assert_eq!(place_new(&placer, "py:1", 128, 6, t0), "warmed");
    // An image nobody holds still goes somewhere, by bin-packing (that agent pulls it or
    // refuses it clearly).
    assert_eq!(place_new(&placer, "other:1", 128, 7, t0), "plain");
}

#[test]
fn prewarmed_sandboxes_are_room_an_agent_gives_up_for_new_work() {
    let t0 = Instant::now();
    let placer = placer();
    // 4096 MB, 3840 of them held by fifteen pre-warmed sandboxes of 256 MB.
    placer.heartbeat(
        &beat_with("full", 3840, &["py:1"], &[("py:1", 256, 15)]),
        t0,
    );
    assert_eq!(
        place_new(&placer, "other:1", 1024, 1, t0),
        "full",
        "the agent removes pre-warmed sandboxes to make room"
    );
}
