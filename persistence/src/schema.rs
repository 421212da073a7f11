//! The diesel schema of the nine shared-state tables.
//!
//! Written by hand rather than by `diesel print-schema`, because the timestamp and
//! document columns use the backend-neutral types of [`crate::types`]. The SQL lives
//! in `migrations/postgres` and `migrations/sqlite` at the workspace root.
#![allow(missing_docs)]

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    agents (id) {
        id -> Int4,
        #[max_length = 255]
        agent_id -> Varchar,
        #[max_length = 255]
        agent_name -> Varchar,
        #[max_length = 50]
        status -> Nullable<Varchar>,
        last_heartbeat -> Nullable<TsTz>,
        last_state_change -> Nullable<TsTz>,
        uptime_details -> Nullable<JsonDoc>,
        metrics -> Nullable<JsonDoc>,
        created_at -> Nullable<TsTz>,
        updated_at -> Nullable<TsTz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    performance_metrics (id) {
        id -> Int4,
        agent_id -> Nullable<Int4>,
        #[max_length = 255]
        metric_name -> Varchar,
        metric_value -> Float4,
        timestamp -> Nullable<TsTz>,
        metadata -> Nullable<JsonDoc>,
        #[max_length = 255]
        source_agent -> Nullable<Varchar>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    system_state (key) {
        #[max_length = 255]
        key -> Varchar,
        value -> JsonDoc,
        created_at -> Nullable<TsTz>,
        updated_at -> Nullable<TsTz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    agent_heartbeats (id) {
        id -> Int4,
        agent_id -> Nullable<Int4>,
        timestamp -> Nullable<TsTz>,
        #[max_length = 50]
        status -> Nullable<Varchar>,
        message -> Nullable<Text>,
        metadata -> Nullable<JsonDoc>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    system_events (id) {
        id -> Int4,
        #[max_length = 100]
        event_type -> Varchar,
        event_data -> Nullable<JsonDoc>,
        timestamp -> Nullable<TsTz>,
        #[max_length = 20]
        severity -> Nullable<Varchar>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    help_requests (request_id) {
        #[max_length = 255]
        request_id -> Varchar,
        query -> Text,
        context -> Nullable<JsonDoc>,
        #[max_length = 50]
        status -> Nullable<Varchar>,
        created_at -> Nullable<TsTz>,
        // Added by the help_request_claims migration (see crate::help_queue).
        claimed_at -> Nullable<TsTz>,
        #[max_length = 255]
        claimed_by -> Nullable<Varchar>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::TsTz;

    help_responses (request_id) {
        #[max_length = 255]
        request_id -> Varchar,
        timestamp -> Nullable<TsTz>,
        response -> Text,
        #[max_length = 50]
        status -> Nullable<Varchar>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::TsTz;

    agent_communications (id) {
        id -> Int4,
        from_agent_id -> Nullable<Int4>,
        to_agent_id -> Nullable<Int4>,
        #[max_length = 100]
        message_type -> Nullable<Varchar>,
        message_content -> Nullable<Text>,
        timestamp -> Nullable<TsTz>,
        #[max_length = 50]
        status -> Nullable<Varchar>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    llm_conversations (id) {
        id -> Int4,
        agent_id -> Nullable<Int4>,
        #[max_length = 255]
        conversation_id -> Nullable<Varchar>,
        message_content -> Nullable<Text>,
        response_content -> Nullable<Text>,
        timestamp -> Nullable<TsTz>,
        metadata -> Nullable<JsonDoc>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::{JsonDoc, TsTz};

    /// Workflow runs and their checkpoints (migration workflow_checkpoints; see
    /// crate::workflow_runs).
    workflow_runs (run_id) {
        #[max_length = 255]
        run_id -> Varchar,
        #[max_length = 255]
        graph -> Varchar,
        #[max_length = 50]
        status -> Varchar,
        step -> Int4,
        #[max_length = 255]
        next_node -> Nullable<Varchar>,
        state -> JsonDoc,
        error -> Nullable<Text>,
        created_at -> Nullable<TsTz>,
        updated_at -> Nullable<TsTz>,
    }
}

diesel::joinable!(performance_metrics -> agents (agent_id));
diesel::joinable!(agent_heartbeats -> agents (agent_id));
diesel::joinable!(llm_conversations -> agents (agent_id));
diesel::joinable!(help_responses -> help_requests (request_id));

diesel::allow_tables_to_appear_in_same_query!(
    agents,
    performance_metrics,
    system_state,
    agent_heartbeats,
    system_events,
    help_requests,
    help_responses,
    agent_communications,
    llm_conversations,
    workflow_runs,
);

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::TsTz;

    agent_commands (id) {
        id -> Int4,
        #[max_length = 255]
        agent_id -> Varchar,
        #[max_length = 20]
        action -> Varchar,
        #[max_length = 20]
        status -> Varchar,
        #[max_length = 255]
        requested_by -> Nullable<Varchar>,
        outcome -> Nullable<Text>,
        created_at -> Nullable<TsTz>,
        updated_at -> Nullable<TsTz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::sql_types::TsTz;

    /// Every attempt to deliver an alert to a webhook (migration alert_deliveries; see
    /// crate::alert_deliveries).
    alert_deliveries (id) {
        id -> Int4,
        #[max_length = 255]
        webhook_name -> Varchar,
        #[max_length = 255]
        incident_key -> Varchar,
        #[max_length = 20]
        status -> Varchar,
        attempt -> Int4,
        #[max_length = 20]
        outcome -> Varchar,
        http_status -> Nullable<Int4>,
        error -> Nullable<Text>,
        duration_ms -> Int8,
        attempted_at -> TsTz,
    }
}
