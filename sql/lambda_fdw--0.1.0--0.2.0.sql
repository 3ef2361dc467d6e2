-- lambda_fdw 0.1.0 to 0.2.0, run by ALTER EXTENSION lambda_fdw UPDATE.
--
-- Kept as released: never edit this file after 0.2.0 is out; a change
-- to the extension's SQL goes into the next version's update script (see
-- "Versions and upgrades" in the README). tests/upgrade.py checks that a
-- 0.1.0 database updated by it equals a fresh 0.2.0 install.
--
-- 0.2.0 adds the after-commit queue (sql/queue.sql as of 0.2.0) and the
-- invocation statistics (sql/stats.sql as of 0.2.0).
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.2.0'" to load this file. \quit

-- Invocations that follow the transaction: lambda_fdw.enqueue() and INSERT
-- into a lambda_fdw foreign table queue them here, inside the caller's
-- transaction; the background worker sends them after COMMIT.
CREATE SCHEMA lambda_fdw;
COMMENT ON SCHEMA lambda_fdw IS 'lambda_fdw: the after-commit invocation queue';
GRANT USAGE ON SCHEMA lambda_fdw TO PUBLIC;

-- An ordinary logged table: a crash loses nothing, and replicas have it.
CREATE TABLE lambda_fdw.invocations (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queued_by        regrole NOT NULL,
  queued_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  function_name    text NOT NULL,
  region           text NOT NULL,
  qualifier        text,
  invocation_type  text NOT NULL CHECK (invocation_type IN ('RequestResponse', 'Event', 'DryRun')),
  payload          jsonb NOT NULL,
  context          jsonb,
  -- The lambda_fdw server whose settings, and the user mapping whose
  -- credentials, sign the request (both NULL: no server for the region,
  -- the default AWS chain). Looked up again when the invocation is sent.
  server           oid,
  user_mapping     oid,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'sending', 'succeeded', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  status_code      integer,
  response         jsonb,
  executed_version text,
  function_error   text,
  error            text,
  request_id       text,
  finished_at      timestamptz
);
COMMENT ON TABLE lambda_fdw.invocations IS
  'Invocations queued by lambda_fdw.enqueue() and INSERT into lambda_fdw foreign tables, sent after COMMIT';
CREATE INDEX invocations_due ON lambda_fdw.invocations (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX invocations_finished ON lambda_fdw.invocations (finished_at) WHERE state IN ('succeeded', 'failed');

-- A role sees its own invocations (superusers see all); only the extension
-- writes the table.
ALTER TABLE lambda_fdw.invocations ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_invocations ON lambda_fdw.invocations FOR SELECT
  USING (queued_by = current_user::regrole);
REVOKE ALL ON lambda_fdw.invocations FROM PUBLIC;
GRANT SELECT ON lambda_fdw.invocations TO PUBLIC;

CREATE FUNCTION lambda_fdw.enqueue(
  function_name text,
  payload jsonb,
  region text DEFAULT NULL,
  invocation_type text DEFAULT 'RequestResponse',
  qualifier text DEFAULT NULL,
  context jsonb DEFAULT NULL)
  RETURNS bigint
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_enqueue';
COMMENT ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb) IS
  'Queues an invocation, sent by the background worker after this transaction commits; returns its id';

-- For DBAs: the queue at a glance, every role's invocations counted (no
-- payloads).
CREATE VIEW lambda_fdw.queue_status AS
  SELECT count(*) FILTER (WHERE state = 'queued')    AS queued,
         count(*) FILTER (WHERE state = 'sending')   AS sending,
         count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
         count(*) FILTER (WHERE state = 'failed')    AS failed,
         clock_timestamp() - min(queued_at) FILTER (WHERE state = 'queued') AS oldest_queued_age,
         count(*) FILTER (WHERE finished_at > clock_timestamp() - interval '1 minute') AS sent_last_minute
    FROM lambda_fdw.invocations;
COMMENT ON VIEW lambda_fdw.queue_status IS
  'lambda_fdw''s after-commit queue: invocations per state, the oldest waiting one, sends in the last minute';
GRANT SELECT ON lambda_fdw.queue_status TO PUBLIC;

-- Invocation statistics across backends, kept in shared memory while
-- lambda_fdw is in shared_preload_libraries (see src/stats.rs).
CREATE FUNCTION lambda_fdw.stat_invocations_internal(
  OUT dbid oid,
  OUT userid oid,
  OUT serverid oid,
  OUT server text,
  OUT function_name text,
  OUT calls bigint,
  OUT succeeded bigint,
  OUT function_errors bigint,
  OUT throttled bigint,
  OUT client_errors bigint,
  OUT service_errors bigint,
  OUT timeouts bigint,
  OUT connect_errors bigint,
  OUT retries bigint,
  OUT total_time_ms double precision,
  OUT min_time_ms double precision,
  OUT max_time_ms double precision,
  OUT bytes_sent bigint,
  OUT bytes_received bigint,
  OUT last_error text,
  OUT last_error_at timestamptz,
  OUT last_call_at timestamptz)
  RETURNS SETOF record
  LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
  AS 'MODULE_PATHNAME', 'lambda_fdw_stat_invocations';
COMMENT ON FUNCTION lambda_fdw.stat_invocations_internal() IS
  'The entries behind lambda_fdw.stat_invocations that the current role may see';

-- One row per database, role, server (NULL: no server, the default AWS
-- chain) and function as resolved (with its qualifier). A role sees its
-- own rows (and those of roles it has the privileges of); superusers and
-- members of pg_read_all_stats see all.
CREATE VIEW lambda_fdw.stat_invocations AS
  SELECT d.datname AS database,
         r.rolname AS role,
         s.server,
         s.function_name,
         s.calls,
         s.succeeded,
         s.function_errors,
         s.throttled,
         s.client_errors,
         s.service_errors,
         s.timeouts,
         s.connect_errors,
         s.retries,
         s.total_time_ms,
         s.min_time_ms,
         s.max_time_ms,
         CASE WHEN s.calls > 0 THEN s.total_time_ms / s.calls END AS mean_time_ms,
         s.bytes_sent,
         s.bytes_received,
         s.last_error,
         s.last_error_at,
         s.last_call_at,
         s.dbid,
         s.userid,
         s.serverid
    FROM lambda_fdw.stat_invocations_internal() s
    LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid;
COMMENT ON VIEW lambda_fdw.stat_invocations IS
  'Lambda invocations made by this server, per database, role, server and function (needs lambda_fdw in shared_preload_libraries)';
GRANT SELECT ON lambda_fdw.stat_invocations TO PUBLIC;

CREATE FUNCTION lambda_fdw.stat_invocations_reset() RETURNS void
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_stat_invocations_reset';
COMMENT ON FUNCTION lambda_fdw.stat_invocations_reset() IS
  'Forgets every lambda_fdw.stat_invocations entry, of every database and role';
-- Superusers only, unless granted (as pg_stat_statements_reset).
REVOKE ALL ON FUNCTION lambda_fdw.stat_invocations_reset() FROM PUBLIC;
