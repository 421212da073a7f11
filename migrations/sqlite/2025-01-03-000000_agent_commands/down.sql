DROP TABLE IF EXISTS agent_commands;
