//! Placement: which agent runs an execution, and the accounting that goes with it (agent
//! memory, warm containers, per-project concurrency and rate).
//!
//! Pure domain code: no HTTP, no database, no clock of its own (every call takes `now`), so it
//! is tested with plain data. All state sits behind one mutex; a placement holds it for one
//! pass over the agents, with no allocation on the common path (a project's or a warm pool's
//! first use allocates its map entry once).
//!
//! Memory model. An agent reports `memory_mb_reserved` (every container it holds, idle or
//! busy) and its warm pools (`idle`/`busy` containers per function version). The scheduler
//! charges every lease `spec.memory_mb` until the lease ends, and counts as "base" what the
//! agent holds outside running work (reserved minus busy containers: idle warm containers,
//! pre-warmed ones). A lease that takes an idle warm container claims that container, so its
//! memory is not counted twice. Claims made since the agent's last heartbeat cannot be in
//! its report yet, so they are subtracted from the idle containers it reported. Used memory
//! is never taken below what the agent itself reported. Idle warm containers that no lease
//! claimed are evictable (the agent evicts the oldest for new work), so a cold placement may
//! count on their memory, but only when no agent fits without evicting.

mod rate;

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fresco_common::wire::{Heartbeat, RetiredKey};
use uuid::Uuid;

use rate::RateWindow;

/// What one placement asks for.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub project_id: &'a str,
    /// The function's image: agents with a pre-warmed sandbox of it (of its memory size) come
    /// first for a cold placement, then agents that hold the image.
    pub image: &'a str,
    pub function_id: Uuid,
    pub version: i32,
    pub memory_mb: i32,
    pub timeout_s: i32,
    /// In-flight executions the project may have; negative means unlimited.
    pub concurrent_limit: i64,
    /// Executions the project may start per minute; negative means unlimited.
    pub per_minute_limit: i64,
}

/// A granted placement: the lease and where it runs.
#[derive(Debug, Clone)]
pub struct Lease {
    pub lease_id: Uuid,
    pub agent_id: Arc<str>,
    pub agent_url: Arc<str>,
    /// The agent had an idle warm container for this function version.
    pub warm: bool,
}

/// A grant: the right to run one function version on one agent, `slots` at once, at most
/// `invocations` times, until it is returned or expires. Its slots count against the
/// project's concurrency and the agent's memory, its budget against the project's rate at
/// grant time, so no quota is ever exceeded by what grants allow.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grant_id: Uuid,
    pub agent_id: Arc<str>,
    pub agent_url: Arc<str>,
    pub slots: u32,
    pub invocations: u32,
    /// The agent had an idle warm container for this function version.
    pub warm: bool,
}

/// Why a placement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("project is at its limit of {limit} concurrent executions")]
    Concurrency { limit: i64, retry_after_s: u64 },
    #[error("project is over its limit of {limit} executions per minute")]
    Rate { limit: i64, retry_after_s: u64 },
    #[error("no agent has room for {memory_mb} MB{}", paused_note(*paused))]
    NoCapacity { memory_mb: i32, paused: usize },
}

fn paused_note(paused: usize) -> String {
    match paused {
        0 => String::new(),
        n => format!(
            " ({n} agent(s) take no work now: container engine unavailable or refusing work)"
        ),
    }
}

impl PlaceError {
    /// Seconds after which the same placement may succeed, for quota refusals.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            PlaceError::Concurrency { retry_after_s, .. }
            | PlaceError::Rate { retry_after_s, .. } => Some(*retry_after_s),
            PlaceError::NoCapacity { .. } => None,
        }
    }
}

/// Timings of the registry.
#[derive(Debug, Clone, Copy)]
pub struct PlacerConfig {
    /// An agent without a heartbeat for this long is down.
    pub agent_down_after: Duration,
    /// Least time between two writes of one agent's state to storage.
    pub persist_interval: Duration,
    /// A lease lives for the function's timeout plus this (ticket lifetime and grace).
    pub lease_extra: Duration,
}

/// What the caller should do after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Write the agent's state to storage now.
    pub persist: bool,
    /// The agent was unknown or down before this heartbeat.
    pub came_up: bool,
}

/// A lease that ended, as the caller may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub lease_id: Uuid,
    pub agent_id: Arc<str>,
}

/// A read-only view of one agent, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub up: bool,
    /// Up but taking no placements (see `Placer::pause`).
    pub paused: bool,
    pub url: Arc<str>,
    pub free_mb: i64,
    pub leases: u32,
}

/// Agents, leases and project accounting behind one mutex.
pub struct Placer {
    config: PlacerConfig,
    state: Mutex<State>,
}

/// A warm container key: a function version, parsed from `FunctionSpec::warm_key()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct WarmKey {
    function_id: Uuid,
    version: i32,
}

impl WarmKey {
    fn parse(text: &str) -> Option<Self> {
        let (id, version) = text.rsplit_once(':')?;
        Some(Self {
            function_id: Uuid::parse_str(id).ok()?,
            version: version.parse().ok()?,
        })
    }
}

/// Retired function versions, for matching warm keys.
struct RetiredSet {
    /// `(function, Some(version))`, or `(function, None)` for every version.
    keys: std::collections::HashSet<(Uuid, Option<i32>)>,
}

impl RetiredSet {
    fn new(keys: &[RetiredKey]) -> Self {
        Self {
            keys: keys.iter().map(|k| (k.function_id, k.version)).collect(),
        }
    }

    fn covers(&self, key: WarmKey) -> bool {
        !self.keys.is_empty()
            && (self.keys.contains(&(key.function_id, None))
                || self.keys.contains(&(key.function_id, Some(key.version))))
    }
}

/// How good an agent is for a new sandbox, best lowest: (needs evictions, no pre-warmed
/// sandbox of the image and size, no image, free room, leases, last chosen).
type ColdRank = (bool, bool, bool, i64, u32, u64);

#[derive(Debug, Default)]
struct State {
    agents: Vec<Agent>,
    by_id: HashMap<Arc<str>, usize>,
    /// Agents that may hold idle containers of a key (checked on use; pruned at heartbeats).
    warm_index: HashMap<WarmKey, Vec<usize>>,
    leases: HashMap<Uuid, LeaseRecord>,
    expiries: BinaryHeap<Reverse<(Instant, Uuid)>>,
    project_index: HashMap<Box<str>, usize>,
    projects: Vec<Project>,
    /// Placement counter, used to spread ties.
    tick: u64,
}

#[derive(Debug)]
struct Agent {
    id: Arc<str>,
    url: Arc<str>,
    up: bool,
    /// Up, but takes no placements until a heartbeat says otherwise: its engine is down, or
    /// it refused work it had been given room for.
    paused: bool,
    last_heartbeat: Instant,
    last_persist: Instant,
    total_mb: i64,
    /// `memory_mb_reserved` as last reported (adjusted by nothing).
    reported_mb: i64,
    /// Memory held outside running work (reported minus busy containers, plus containers
    /// released warm since).
    base_mb: i64,
    /// Memory of this scheduler's active leases.
    leased_mb: i64,
    /// Memory of idle containers claimed by unreported warm leases (counted in base and leased).
    claimed_mb: i64,
    /// Memory of the idle containers in the warm pools (part of base).
    idle_mb: i64,
    leases: u32,
    last_chosen: u64,
    pools: HashMap<WarmKey, Pool>,
    /// Runtime images the agent holds, as last reported.
    images: Vec<Box<str>>,
    /// Pre-warmed sandboxes ready per (image, memory size), as last reported, less the cold
    /// placements made there since (each may claim one).
    prewarmed: Vec<(Box<str>, i64, u32)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Pool {
    idle: u32,
    busy: u32,
    memory_mb: i64,
    /// Leases made since the agent's last heartbeat that took one of the idle containers.
    claims: u32,
}

impl Pool {
    fn claimed(&self) -> u32 {
        self.claims.min(self.idle)
    }
    fn available(&self) -> u32 {
        self.idle - self.claimed()
    }
}

#[derive(Debug)]
struct LeaseRecord {
    agent: usize,
    project: usize,
    key: WarmKey,
    /// Memory of all its slots.
    memory_mb: i64,
    warm: bool,
    /// Executions it counts against the project's concurrency (1 for a lease).
    slots: u32,
    /// Idle warm containers it claimed (0 or 1 for a lease).
    claimed: u32,
    /// A grant (its pools are left to the agent's next heartbeat when it ends).
    grant: Option<GrantBudget>,
    created: Instant,
    expires: Instant,
    /// Its function version was retired meanwhile: its container is not warm again.
    retired: bool,
}

/// The rate budget a grant counted.
#[derive(Debug, Clone, Copy)]
struct GrantBudget {
    invocations: u32,
    /// The rate window it was counted in.
    counted_in: Option<Instant>,
}

#[derive(Debug, Default)]
struct Project {
    in_flight: u32,
    rate: RateWindow,
}

impl Agent {
    /// Whether new work may go there.
    fn placeable(&self) -> bool {
        self.up && !self.paused
    }
    fn used_mb(&self) -> i64 {
        (self.base_mb + self.leased_mb - self.claimed_mb).max(self.reported_mb)
    }
    /// Free memory; negative while the agent evicts idle containers for our leases.
    fn free_mb(&self) -> i64 {
        self.total_mb - self.used_mb()
    }
    /// Memory of idle containers no lease claimed: the agent evicts them for new work.
    fn evictable_mb(&self) -> i64 {
        (self.idle_mb - self.claimed_mb).max(0)
    }

    /// Changes one pool and keeps `claimed_mb` in step.
    fn adjust_pool(&mut self, key: WarmKey, memory_mb: i64, change: impl FnOnce(&mut Pool)) {
        let pool = self.pools.entry(key).or_insert(Pool {
            memory_mb,
            ..Pool::default()
        });
        let before = i64::from(pool.claimed()) * pool.memory_mb;
        change(pool);
        let after = i64::from(pool.claimed()) * pool.memory_mb;
        self.claimed_mb += after - before;
    }
}

impl Placer {
    pub fn new(config: PlacerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Places one execution: quota checks, then an up agent with an idle warm container for
    /// the function version, else the fullest agent the memory still fits (ties: the agent
    /// with fewer leases, then the one chosen least recently).
    pub fn place(&self, demand: &Demand<'_>, now: Instant) -> Result<Lease, PlaceError> {
        let lease_id = Uuid::new_v4();
        let key = WarmKey {
            function_id: demand.function_id,
            version: demand.version,
        };
        let memory_mb = i64::from(demand.memory_mb.max(0));
        let lifetime = Duration::from_secs(u64::try_from(demand.timeout_s).unwrap_or(0))
            + self.config.lease_extra;

        let mut guard = self.lock();
        let state = &mut *guard;
        let project = state.project(demand.project_id);
        let p = &mut state.projects[project];
        if demand.concurrent_limit >= 0 && i64::from(p.in_flight) >= demand.concurrent_limit {
            return Err(PlaceError::Concurrency {
                limit: demand.concurrent_limit,
                retry_after_s: 1,
            });
        }
        if let Err(retry_after_s) = p.rate.check(now, demand.per_minute_limit) {
            return Err(PlaceError::Rate {
                limit: demand.per_minute_limit,
                retry_after_s,
            });
        }

        let (chosen, warm) = match state.pick_warm(key) {
            Some(i) => (i, true),
            None => (
                state
                    .pick_cold(memory_mb, demand.image)
                    .ok_or_else(|| PlaceError::NoCapacity {
                        memory_mb: demand.memory_mb,
                        paused: state.agents.iter().filter(|a| a.up && a.paused).count(),
                    })?,
                false,
            ),
        };

        state.tick += 1;
        let tick = state.tick;
        let agent = &mut state.agents[chosen];
        agent.leases += 1;
        agent.leased_mb += memory_mb;
        agent.last_chosen = tick;
        if warm {
            agent.adjust_pool(key, memory_mb, |pool| pool.claims += 1);
        }
        let lease = Lease {
            lease_id,
            agent_id: agent.id.clone(),
            agent_url: agent.url.clone(),
            warm,
        };
        let p = &mut state.projects[project];
        p.in_flight += 1;
        p.rate.record(now);
        let expires = now + lifetime;
        state.leases.insert(
            lease_id,
            LeaseRecord {
                agent: chosen,
                project,
                key,
                memory_mb,
                warm,
                slots: 1,
                claimed: u32::from(warm),
                grant: None,
                created: now,
                expires,
                retired: false,
            },
        );
        state.expiries.push(Reverse((expires, lease_id)));
        Ok(lease)
    }

    /// Grants up to `slots` concurrent executions and `invocations` starts of one function
    /// version on one agent for `ttl`: quota checks as for a placement, then as many slots as
    /// the project's concurrency headroom, its rate headroom and the chosen agent's memory
    /// allow (at least one, or the refusal a placement would get). The agent is chosen as a
    /// placement's: an idle warm container first, else the fullest that fits.
    pub fn grant(
        &self,
        demand: &Demand<'_>,
        slots: u32,
        invocations: u32,
        ttl: Duration,
        now: Instant,
    ) -> Result<Grant, PlaceError> {
        let grant_id = Uuid::new_v4();
        let key = WarmKey {
            function_id: demand.function_id,
            version: demand.version,
        };
        let memory_mb = i64::from(demand.memory_mb.max(0));

        let mut guard = self.lock();
        let state = &mut *guard;
        let project = state.project(demand.project_id);
        let p = &mut state.projects[project];
        let mut slots = slots.max(1);
        if demand.concurrent_limit >= 0 {
            let headroom = demand.concurrent_limit - i64::from(p.in_flight);
            if headroom <= 0 {
                return Err(PlaceError::Concurrency {
                    limit: demand.concurrent_limit,
                    retry_after_s: 1,
                });
            }
            slots = slots.min(u32::try_from(headroom).unwrap_or(u32::MAX));
        }
        let mut invocations = invocations.max(1);
        match p.rate.headroom(now, demand.per_minute_limit) {
            Some(0) => {
                let retry_after_s = p
                    .rate
                    .check(now, demand.per_minute_limit)
                    .err()
                    .unwrap_or(1);
                return Err(PlaceError::Rate {
                    limit: demand.per_minute_limit,
                    retry_after_s,
                });
            }
            Some(room) => invocations = invocations.min(room),
            None => {}
        }
        // Slots beyond the budget could never be used.
        slots = slots.min(invocations);

        let (chosen, warm) = match state.pick_warm(key) {
            Some(i) => (i, true),
            None => (
                state
                    .pick_cold(memory_mb, demand.image)
                    .ok_or_else(|| PlaceError::NoCapacity {
                        memory_mb: demand.memory_mb,
                        paused: state.agents.iter().filter(|a| a.up && a.paused).count(),
                    })?,
                false,
            ),
        };
        let agent = &mut state.agents[chosen];
        // Idle containers of the version it may claim, then fresh memory for the rest.
        let available = agent.pools.get(&key).map_or(0, Pool::available);
        let claimed = if warm { slots.min(available) } else { 0 };
        if memory_mb > 0 {
            let free = agent.free_mb().max(0) + if warm { 0 } else { agent.evictable_mb() };
            let fresh = u32::try_from(free / memory_mb).unwrap_or(u32::MAX);
            slots = slots.min(claimed.saturating_add(fresh)).max(1);
        }
        let claimed = claimed.min(slots);

        state.tick += 1;
        let tick = state.tick;
        let agent = &mut state.agents[chosen];
        agent.leases += 1;
        agent.leased_mb += i64::from(slots) * memory_mb;
        agent.last_chosen = tick;
        if claimed > 0 {
            agent.adjust_pool(key, memory_mb, |pool| pool.claims += claimed);
        }
        let grant = Grant {
            grant_id,
            agent_id: agent.id.clone(),
            agent_url: agent.url.clone(),
            slots,
            invocations,
            warm,
        };
        let p = &mut state.projects[project];
        p.in_flight += slots;
        let counted_in = p.rate.record_many(now, invocations);
        let expires = now + ttl;
        state.leases.insert(
            grant_id,
            LeaseRecord {
                agent: chosen,
                project,
                key,
                memory_mb: i64::from(slots) * memory_mb,
                warm,
                slots,
                claimed,
                grant: Some(GrantBudget {
                    invocations,
                    counted_in,
                }),
                created: now,
                expires,
                retired: false,
            },
        );
        state.expiries.push(Reverse((expires, grant_id)));
        Ok(grant)
    }

    /// Ends a grant its holder returned: its slots and memory are free again, and the part of
    /// its budget that `used` says was not started is given back to the project's rate window
    /// (all of it counts when `used` is unknown). Returns `None` for an unknown (expired or
    /// already returned) grant, or an id that is not a grant's.
    pub fn return_grant(&self, grant_id: Uuid, used: Option<u32>, now: Instant) -> Option<Ended> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let budget = state.leases.get(&grant_id)?.grant?;
        let record = state.leases.remove(&grant_id)?;
        if let Some(used) = used {
            let unused = budget.invocations.saturating_sub(used);
            state.projects[record.project]
                .rate
                .refund(now, budget.counted_in, unused);
        }
        Some(state.end(grant_id, &record, true))
    }

    /// Ends a lease; `warm` says the container is idle again for the same function version.
    /// Returns `None` for an unknown (already ended) lease.
    pub fn release(&self, lease_id: Uuid, warm: bool) -> Option<Ended> {
        let mut state = self.lock();
        if state.leases.get(&lease_id)?.grant.is_some() {
            return None;
        }
        let record = state.leases.remove(&lease_id)?;
        Some(state.end(lease_id, &record, warm))
    }

    /// Records a heartbeat; unknown agents are added.
    pub fn heartbeat(&self, heartbeat: &Heartbeat, now: Instant) -> HeartbeatOutcome {
        self.heartbeat_retiring(heartbeat, now, &[])
    }

    /// Records a heartbeat from an agent that has yet to apply `retiring` (the retirements
    /// after its acknowledgement, sent in this heartbeat's reply): the idle containers it
    /// reports for those function versions are on their way out and attract no placement.
    pub fn heartbeat_retiring(
        &self,
        heartbeat: &Heartbeat,
        now: Instant,
        retiring: &[RetiredKey],
    ) -> HeartbeatOutcome {
        let retiring = RetiredSet::new(retiring);
        let mut guard = self.lock();
        let state = &mut *guard;
        let index = match state.by_id.get(heartbeat.agent_id.as_str()) {
            Some(&i) => i,
            None => {
                let id: Arc<str> = Arc::from(heartbeat.agent_id.as_str());
                state.agents.push(Agent {
                    id: id.clone(),
                    url: Arc::from(heartbeat.url.as_str()),
                    up: false,
                    paused: false,
                    last_heartbeat: now,
                    last_persist: now,
                    total_mb: 0,
                    reported_mb: 0,
                    base_mb: 0,
                    leased_mb: 0,
                    claimed_mb: 0,
                    idle_mb: 0,
                    leases: 0,
                    last_chosen: 0,
                    pools: HashMap::new(),
                    images: Vec::new(),
                    prewarmed: Vec::new(),
                });
                state.by_id.insert(id, state.agents.len() - 1);
                state.agents.len() - 1
            }
        };
        let agent = &mut state.agents[index];
        let came_up = !agent.up;
        agent.up = true;
        agent.paused = heartbeat.engine_down;
        agent.last_heartbeat = now;
        if *agent.url != *heartbeat.url {
            agent.url = Arc::from(heartbeat.url.as_str());
        }
        agent.total_mb = heartbeat.memory_mb_total;
        agent.reported_mb = heartbeat.memory_mb_reserved;
        agent.images = heartbeat.images.iter().map(|i| i.as_str().into()).collect();
        agent.prewarmed = heartbeat
            .prewarmed
            .iter()
            .filter(|p| p.ready > 0)
            .map(|p| (p.image.as_str().into(), i64::from(p.memory_mb), p.ready))
            .collect();

        // Every lease made before now is reflected from here on: the pools are rebuilt from
        // the report and claim counts restart at zero.
        for key in agent.pools.keys() {
            if let Entry::Occupied(mut agents) = state.warm_index.entry(*key) {
                agents.get_mut().retain(|&a| a != index);
                if agents.get().is_empty() {
                    agents.remove();
                }
            }
        }
        agent.pools.clear();
        let mut busy_mb = 0;
        let mut idle_mb = 0;
        for reported in &heartbeat.warm {
            let Some(key) = WarmKey::parse(&reported.key) else {
                continue;
            };
            let memory_mb = i64::from(reported.memory_mb.max(0));
            busy_mb += i64::from(reported.busy) * memory_mb;
            idle_mb += i64::from(reported.idle) * memory_mb;
            let pool = agent.pools.entry(key).or_default();
            pool.busy = pool.busy.saturating_add(reported.busy);
            pool.memory_mb = memory_mb;
            if retiring.covers(key) {
                continue;
            }
            pool.idle = pool.idle.saturating_add(reported.idle);
            if reported.idle > 0 {
                let agents = state.warm_index.entry(key).or_default();
                if !agents.contains(&index) {
                    agents.push(index);
                }
            }
        }
        agent.claimed_mb = 0;
        // Pre-warmed sandboxes hold memory the agent gives up for new work like idle ones.
        let prewarmed_mb: i64 = heartbeat
            .prewarmed
            .iter()
            .map(|p| i64::from(p.ready) * i64::from(p.memory_mb.max(0)))
            .sum();
        agent.idle_mb = idle_mb + prewarmed_mb;
        agent.base_mb = (heartbeat.memory_mb_reserved - busy_mb).max(0);

        let persist =
            came_up || now.duration_since(agent.last_persist) >= self.config.persist_interval;
        if persist {
            agent.last_persist = now;
        }
        HeartbeatOutcome { persist, came_up }
    }

    /// Stops warm affinity for retired function versions: their idle containers count as
    /// gone (the agents destroy them when they hear of it) and leases in flight do not make
    /// them warm again. Returns how many agents' pools changed. The next heartbeat of each
    /// agent rebuilds its pools from what it still holds.
    pub fn retire(&self, keys: &[RetiredKey]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let retired = RetiredSet::new(keys);
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut changed = 0;
        for (index, agent) in state.agents.iter_mut().enumerate() {
            let matching: Vec<WarmKey> = agent
                .pools
                .iter()
                .filter(|(key, pool)| pool.idle > 0 && retired.covers(**key))
                .map(|(key, _)| *key)
                .collect();
            for key in &matching {
                let Some(pool) = agent.pools.get(key).copied() else {
                    continue;
                };
                let idle_mb = i64::from(pool.idle) * pool.memory_mb;
                agent.adjust_pool(*key, pool.memory_mb, |p| p.idle = 0);
                agent.idle_mb = (agent.idle_mb - idle_mb).max(0);
                agent.base_mb = (agent.base_mb - idle_mb).max(0);
                if let Entry::Occupied(mut agents) = state.warm_index.entry(*key) {
                    agents.get_mut().retain(|&a| a != index);
                    if agents.get().is_empty() {
                        agents.remove();
                    }
                }
            }
            changed += usize::from(!matching.is_empty());
        }
        for record in state.leases.values_mut() {
            if retired.covers(record.key) {
                record.retired = true;
            }
        }
        changed
    }

    /// Marks an agent down at once (its connection failed); it comes back with its next
    /// heartbeat. Returns whether it was up.
    pub fn mark_down(&self, agent_id: &str) -> bool {
        let mut state = self.lock();
        match state.by_id.get(agent_id).copied() {
            Some(i) => std::mem::replace(&mut state.agents[i].up, false),
            None => false,
        }
    }

    /// Takes an agent out of placement until its next heartbeat (it refused work: full, or its
    /// engine failed), without taking it down: its running work goes on. Returns whether it
    /// was placeable.
    pub fn pause(&self, agent_id: &str) -> bool {
        let mut state = self.lock();
        match state.by_id.get(agent_id).copied() {
            Some(i) => {
                let agent = &mut state.agents[i];
                let was = agent.placeable();
                agent.paused = true;
                was
            }
            None => false,
        }
    }

    /// Marks down the agents whose heartbeats stopped and ends expired leases. Returns the
    /// agents that went down and the leases that expired.
    pub fn sweep(&self, now: Instant) -> (Vec<Arc<str>>, Vec<Ended>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut down = Vec::new();
        for agent in &mut state.agents {
            if agent.up && now.duration_since(agent.last_heartbeat) >= self.config.agent_down_after
            {
                agent.up = false;
                down.push(agent.id.clone());
            }
        }
        let mut expired = Vec::new();
        while let Some(Reverse((at, lease_id))) = state.expiries.peek().copied() {
            if at > now {
                break;
            }
            state.expiries.pop();
            let current = state.leases.get(&lease_id).is_some_and(|r| r.expires == at);
            if current {
                if let Some(record) = state.leases.remove(&lease_id) {
                    // The container's fate is unknown: count it as gone.
                    expired.push(state.end(lease_id, &record, false));
                }
            }
        }
        // Released leases leave their expiry entries behind; drop them when they dominate.
        if state.expiries.len() > 2 * state.leases.len() + 1024 {
            state.expiries = state
                .leases
                .iter()
                .map(|(id, record)| Reverse((record.expires, *id)))
                .collect();
        }
        (down, expired)
    }

    /// Whether the agent is known and up.
    pub fn is_up(&self, agent_id: &str) -> bool {
        let state = self.lock();
        state
            .by_id
            .get(agent_id)
            .is_some_and(|&i| state.agents[i].up)
    }

    /// Ids of the agents that are up.
    pub fn up_agents(&self) -> Vec<Arc<str>> {
        let state = self.lock();
        state
            .agents
            .iter()
            .filter(|a| a.up)
            .map(|a| a.id.clone())
            .collect()
    }

    /// A view of one agent.
    pub fn agent(&self, agent_id: &str) -> Option<AgentView> {
        let state = self.lock();
        let agent = &state.agents[*state.by_id.get(agent_id)?];
        Some(AgentView {
            up: agent.up,
            paused: agent.paused,
            url: agent.url.clone(),
            free_mb: agent.free_mb(),
            leases: agent.leases,
        })
    }

    /// Executions in flight (active leases) of a project.
    pub fn in_flight(&self, project_id: &str) -> u32 {
        let state = self.lock();
        state
            .project_index
            .get(project_id)
            .map_or(0, |&p| state.projects[p].in_flight)
    }

    /// Number of active leases.
    pub fn lease_count(&self) -> usize {
        self.lock().leases.len()
    }
}

impl State {
    fn project(&mut self, project_id: &str) -> usize {
        if let Some(&p) = self.project_index.get(project_id) {
            return p;
        }
        self.projects.push(Project::default());
        let p = self.projects.len() - 1;
        self.project_index.insert(project_id.into(), p);
        p
    }

    /// The up agent with an available idle container of `key`, fewest leases first.
    fn pick_warm(&self, key: WarmKey) -> Option<usize> {
        let candidates = self.warm_index.get(&key)?;
        let mut best: Option<(usize, (u32, u64))> = None;
        for &i in candidates {
            let agent = &self.agents[i];
            if !agent.placeable() || agent.pools.get(&key).is_none_or(|p| p.available() == 0) {
                continue;
            }
            let rank = (agent.leases, agent.last_chosen);
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The up agent for a new sandbox of `image` and `memory_mb`: one that fits it without
    /// evicting idle warm containers first; among those, one with a pre-warmed sandbox of the
    /// image and size first, then one holding the image (no pull), then the least free memory
    /// that still fits (bin-packing).
    fn pick_cold(&mut self, memory_mb: i64, image: &str) -> Option<usize> {
        let chosen = self.rank_cold(memory_mb, image)?;
        // A pre-warmed sandbox is claimed by this placement: the next one looks elsewhere
        // until the agent reports its pool again.
        if let Some(entry) = self.agents[chosen]
            .prewarmed
            .iter_mut()
            .find(|(i, m, ready)| **i == *image && *m == memory_mb && *ready > 0)
        {
            entry.2 -= 1;
        }
        Some(chosen)
    }

    fn rank_cold(&self, memory_mb: i64, image: &str) -> Option<usize> {
        let mut best: Option<(usize, ColdRank)> = None;
        for (i, agent) in self.agents.iter().enumerate() {
            if !agent.placeable() {
                continue;
            }
            let free = agent.free_mb();
            let evicts = free < memory_mb;
            let room = if evicts {
                free + agent.evictable_mb()
            } else {
                free
            };
            if room < memory_mb {
                continue;
            }
            let prewarmed = agent
                .prewarmed
                .iter()
                .any(|(i, m, ready)| **i == *image && *m == memory_mb && *ready > 0);
            let has_image = agent.images.iter().any(|i| **i == *image);
            let rank = (
                evicts,
                !prewarmed,
                !has_image,
                room,
                agent.leases,
                agent.last_chosen,
            );
            let better = match best {
                None => true,
                Some((_, r)) => rank.cmp(&r) == Ordering::Less,
            };
            if better {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Undoes a lease's accounting (the record is already removed from `leases`).
    fn end(&mut self, lease_id: Uuid, record: &LeaseRecord, warm_again: bool) -> Ended {
        let warm_again = warm_again && !record.retired;
        let project = &mut self.projects[record.project];
        project.in_flight = project.in_flight.saturating_sub(record.slots);
        let agent = &mut self.agents[record.agent];
        agent.leases = agent.leases.saturating_sub(1);
        agent.leased_mb -= record.memory_mb;
        let reflected = record.created < agent.last_heartbeat;
        if record.grant.is_some() {
            // The containers a grant used stay with the agent, idle or busy as its next
            // heartbeat says; only the claims made since its last one are undone here.
            if !reflected && record.claimed > 0 {
                let claimed = record.claimed;
                agent.adjust_pool(
                    record.key,
                    record.memory_mb / i64::from(record.slots.max(1)),
                    |pool| {
                        pool.claims = pool.claims.saturating_sub(claimed);
                    },
                );
            }
            return Ended {
                lease_id,
                agent_id: agent.id.clone(),
            };
        }
        let took_idle = record.warm;
        let mut base_delta = 0;
        let mut now_idle = false;
        agent.adjust_pool(record.key, record.memory_mb, |pool| {
            if reflected {
                // The agent reported the container busy: it leaves the busy set.
                pool.busy = pool.busy.saturating_sub(1);
                if warm_again {
                    pool.idle += 1;
                    base_delta = pool.memory_mb;
                }
            } else {
                if took_idle {
                    pool.claims = pool.claims.saturating_sub(1);
                }
                match (took_idle, warm_again) {
                    // The idle container it claimed is idle again: nothing else changes.
                    (true, true) => {}
                    // (Unless retirement already counted the idle container gone.)
                    (true, false) if pool.idle > 0 => {
                        pool.idle -= 1;
                        base_delta = -pool.memory_mb;
                    }
                    (true, false) => {}
                    (false, true) => {
                        pool.idle += 1;
                        base_delta = pool.memory_mb;
                    }
                    (false, false) => {}
                }
            }
            now_idle = pool.idle > 0;
        });
        agent.base_mb = (agent.base_mb + base_delta).max(0);
        agent.idle_mb = (agent.idle_mb + base_delta).max(0);
        let agent_id = agent.id.clone();
        if now_idle {
            let agents = self.warm_index.entry(record.key).or_default();
            if !agents.contains(&record.agent) {
                agents.push(record.agent);
            }
        }
        Ended { lease_id, agent_id }
    }
}

#[cfg(test)]
mod tests;
