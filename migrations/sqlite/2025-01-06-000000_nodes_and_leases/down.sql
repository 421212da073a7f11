DROP TABLE IF EXISTS vigil_ownership_log;
DROP TABLE IF EXISTS vigil_agent_leases;
DROP TABLE IF EXISTS vigil_nodes;
