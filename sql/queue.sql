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
  -- credentials, sign the request (both NULL: no route server for the
  -- region, the settings and the server process's AWS chain). Looked up
  -- again when the invocation is sent: a row whose role, server or mapping
  -- no longer checks out is failed, never sent.
  server           oid,
  user_mapping     oid,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'sending', 'succeeded', 'failed', 'cancelled')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  status_code      integer,
  response         jsonb,
  executed_version text,
  function_error   text,
  error            text,
  request_id       text,
  finished_at      timestamptz,
  -- The foreign table an INSERT queued it through (signed as a foreign
  -- table's calls are); NULL for lambda_fdw.enqueue (signed through the
  -- region's route, as aws_lambda.invoke is). Since 0.3.0.
  foreign_table    oid,
  -- Since 0.6.0. Invocations with the same key are sent one at a time, in
  -- the order they were queued, each after the one before has finished.
  ordering_key     text,
  -- Called with the finished row, as queued_by, in the transaction that
  -- records the outcome; what it raised goes to callback_error.
  on_complete      regprocedure,
  callback_error   text
);
COMMENT ON TABLE lambda_fdw.invocations IS
  'Invocations queued by lambda_fdw.enqueue() and INSERT into lambda_fdw foreign tables, sent after COMMIT';
CREATE INDEX invocations_due ON lambda_fdw.invocations (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX invocations_finished ON lambda_fdw.invocations (finished_at)
  WHERE state IN ('succeeded', 'failed', 'cancelled');
-- The invocations an ordered one waits for (same key, queued before it).
CREATE INDEX invocations_ordering ON lambda_fdw.invocations (ordering_key, id)
  WHERE ordering_key IS NOT NULL AND state IN ('queued', 'sending');

-- A role sees its own invocations (superusers see all); only the extension
-- writes the table.
ALTER TABLE lambda_fdw.invocations ENABLE ROW LEVEL SECURITY;
-- The operator is qualified: regrole has no = of its own, so a bare = would
-- bind to one a database owner created in the schema this script runs in.
CREATE POLICY own_invocations ON lambda_fdw.invocations FOR SELECT
  USING (queued_by OPERATOR(pg_catalog.=) current_user::pg_catalog.regrole);
REVOKE ALL ON lambda_fdw.invocations FROM PUBLIC;
GRANT SELECT ON lambda_fdw.invocations TO PUBLIC;

CREATE FUNCTION lambda_fdw.enqueue(
  function_name text,
  payload jsonb,
  region text DEFAULT NULL,
  invocation_type text DEFAULT 'RequestResponse',
  qualifier text DEFAULT NULL,
  context jsonb DEFAULT NULL,
  on_complete regproc DEFAULT NULL,
  ordering_key text DEFAULT NULL,
  not_before timestamptz DEFAULT NULL)
  RETURNS bigint
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_enqueue';
COMMENT ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz) IS
  'Queues an invocation, sent by the background worker after this transaction commits; returns its id';

-- For DBAs: the queue at a glance, every role's invocations counted (no
-- payloads); cancelled and database since 0.6.0.
CREATE VIEW lambda_fdw.queue_status AS
  SELECT count(*) FILTER (WHERE state = 'queued')    AS queued,
         count(*) FILTER (WHERE state = 'sending')   AS sending,
         count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
         count(*) FILTER (WHERE state = 'failed')    AS failed,
         clock_timestamp() - min(queued_at) FILTER (WHERE state = 'queued') AS oldest_queued_age,
         count(*) FILTER (WHERE finished_at > clock_timestamp() - interval '1 minute') AS sent_last_minute,
         count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
         current_database()::name AS database
    FROM lambda_fdw.invocations;
COMMENT ON VIEW lambda_fdw.queue_status IS
  'lambda_fdw''s after-commit queue in this database: invocations per state, the oldest waiting one, sends in the last minute';
GRANT SELECT ON lambda_fdw.queue_status TO PUBLIC;

-- The same per function (since 0.6.0): which function's invocations wait,
-- fail or are held back.
CREATE VIEW lambda_fdw.queue_status_by_function AS
  SELECT function_name, region,
         count(*) FILTER (WHERE state = 'queued')    AS queued,
         count(*) FILTER (WHERE state = 'sending')   AS sending,
         count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
         count(*) FILTER (WHERE state = 'failed')    AS failed,
         count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
         clock_timestamp() - min(queued_at) FILTER (WHERE state = 'queued') AS oldest_queued_age,
         count(*) FILTER (WHERE finished_at > clock_timestamp() - interval '1 minute') AS sent_last_minute
    FROM lambda_fdw.invocations
   GROUP BY function_name, region;
COMMENT ON VIEW lambda_fdw.queue_status_by_function IS
  'lambda_fdw''s after-commit queue in this database, per function and region';
GRANT SELECT ON lambda_fdw.queue_status_by_function TO PUBLIC;

-- Operations on queued invocations (since 0.6.0), each allowed to the role
-- that queued the invocation and to superusers (42501 for others).
CREATE FUNCTION lambda_fdw.retry(id bigint)
  RETURNS void
  LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_retry';
COMMENT ON FUNCTION lambda_fdw.retry(bigint) IS
  'Queues a failed or cancelled invocation again, with its attempts counted from zero';
CREATE FUNCTION lambda_fdw.retry_failed(
  function_name text DEFAULT NULL,
  failed_after timestamptz DEFAULT NULL,
  failed_before timestamptz DEFAULT NULL)
  RETURNS bigint
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_retry_failed';
COMMENT ON FUNCTION lambda_fdw.retry_failed(text, timestamptz, timestamptz) IS
  'Queues again the failed invocations you queued (every role''s for a superuser), of one function and a time range if given; returns how many';
CREATE FUNCTION lambda_fdw.cancel(id bigint)
  RETURNS void
  LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_cancel';
COMMENT ON FUNCTION lambda_fdw.cancel(bigint) IS
  'Cancels a queued invocation (not one being sent): it is never sent';

-- Only roles granted it may queue (0.3.0), as only those granted
-- aws_lambda.invoke may call it: what enqueue sends is signed by the same
-- route.
REVOKE ALL ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz) FROM PUBLIC;
-- retry sends again, so it is granted as enqueue is; cancel too, beside it.
REVOKE ALL ON FUNCTION lambda_fdw.retry(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION lambda_fdw.retry_failed(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION lambda_fdw.cancel(bigint) FROM PUBLIC;
