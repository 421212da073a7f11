-- Many Vigil processes ("nodes") on one database: who is a member, which node runs
-- each agent, and every interval of ownership (see persistence/src/nodes.rs). Every
-- time here is the server's (now()), never a node's clock.

-- The members. A node renews its lease every few seconds; it is alive while
-- lease_expires_at is in the future and stopped_at is NULL (decided at read time).
CREATE TABLE IF NOT EXISTS vigil_nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    renewed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    lease_expires_at TIMESTAMPTZ NOT NULL,
    stopped_at TIMESTAMPTZ
);

-- One row per agent: its owner (NULL: released, claimable at once) until
-- lease_expires_at, and its epoch, the fencing token, raised on every change of owner.
-- A write carrying an older epoch, or another node's, is refused by the writer.
CREATE TABLE IF NOT EXISTS vigil_agent_leases (
    agent_id TEXT PRIMARY KEY,
    node_id TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    placement TEXT NOT NULL DEFAULT 'singleton' CHECK (placement IN ('singleton', 'per_node')),
    acquired_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_vigil_agent_leases_node_id ON vigil_agent_leases (node_id);

-- Every ownership interval: one per (agent, epoch), at most one open per agent.
CREATE TABLE IF NOT EXISTS vigil_ownership_log (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ended_at TIMESTAMPTZ,
    end_reason TEXT CHECK (end_reason IN ('released', 'expired', 'lost')),
    UNIQUE (agent_id, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_vigil_ownership_log_open ON vigil_ownership_log (agent_id) WHERE ended_at IS NULL;
