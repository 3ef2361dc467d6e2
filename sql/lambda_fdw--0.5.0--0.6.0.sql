-- lambda_fdw 0.5.0 -> 0.6.0: the queue gains completion callbacks, ordering
-- keys, delayed sends, cancelling and retrying (docs/queue.md).
-- - lambda_fdw.invocations gains ordering_key, on_complete and
--   callback_error (at its end, where the install script has them too) and
--   the state 'cancelled';
-- - lambda_fdw.enqueue gains on_complete, ordering_key and not_before. A
--   function cannot gain parameters, so it is made again, and the EXECUTE
--   grants of the old one are given to the new one;
-- - lambda_fdw.queue_status gains cancelled and database (at its end);
--   lambda_fdw.queue_status_by_function, lambda_fdw.retry,
--   lambda_fdw.retry_failed and lambda_fdw.cancel are new.
-- Every name is qualified: this runs with the installer's search_path.
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.6.0'" to load this file. \quit

ALTER TABLE lambda_fdw.invocations
  ADD COLUMN ordering_key text,
  ADD COLUMN on_complete pg_catalog.regprocedure,
  ADD COLUMN callback_error text,
  DROP CONSTRAINT invocations_state_check,
  ADD CONSTRAINT invocations_state_check
    CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'sending', 'succeeded', 'failed', 'cancelled']::pg_catalog.text[]));
DROP INDEX lambda_fdw.invocations_finished;
CREATE INDEX invocations_finished ON lambda_fdw.invocations (finished_at)
  WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'cancelled']::pg_catalog.text[]);
CREATE INDEX invocations_ordering ON lambda_fdw.invocations (ordering_key, id)
  WHERE ordering_key IS NOT NULL
    AND state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'sending']::pg_catalog.text[]);

-- The new function is made beside the old one, given its grants, and the
-- old one dropped.
CREATE FUNCTION lambda_fdw.enqueue(
  function_name text,
  payload jsonb,
  region text DEFAULT NULL,
  invocation_type text DEFAULT 'RequestResponse',
  qualifier text DEFAULT NULL,
  context jsonb DEFAULT NULL,
  on_complete pg_catalog.regproc DEFAULT NULL,
  ordering_key text DEFAULT NULL,
  not_before timestamptz DEFAULT NULL)
  RETURNS bigint
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_enqueue';
COMMENT ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, pg_catalog.regproc, text, timestamptz) IS
  'Queues an invocation, sent by the background worker after this transaction commits; returns its id';
REVOKE ALL ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, pg_catalog.regproc, text, timestamptz) FROM PUBLIC;
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT a.grantee, a.is_grantable
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=)
             'lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb)'::pg_catalog.regprocedure
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
  LOOP
    EXECUTE pg_catalog.format(
      'GRANT EXECUTE ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, pg_catalog.regproc, text, timestamptz) TO %s%s',
      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
           ELSE g.grantee::pg_catalog.regrole::text END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END $$;
DROP FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb);

CREATE OR REPLACE VIEW lambda_fdw.queue_status AS
  SELECT count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'queued')    AS queued,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'sending')   AS sending,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'succeeded') AS succeeded,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'failed')    AS failed,
         pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           min(queued_at) FILTER (WHERE state OPERATOR(pg_catalog.=) 'queued') AS oldest_queued_age,
         count(*) FILTER (WHERE finished_at OPERATOR(pg_catalog.>)
           (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '1 minute')) AS sent_last_minute,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,
         pg_catalog.current_database()::pg_catalog.name AS database
    FROM lambda_fdw.invocations;
COMMENT ON VIEW lambda_fdw.queue_status IS
  'lambda_fdw''s after-commit queue in this database: invocations per state, the oldest waiting one, sends in the last minute';

CREATE VIEW lambda_fdw.queue_status_by_function AS
  SELECT function_name, region,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'queued')    AS queued,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'sending')   AS sending,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'succeeded') AS succeeded,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'failed')    AS failed,
         count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,
         pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           min(queued_at) FILTER (WHERE state OPERATOR(pg_catalog.=) 'queued') AS oldest_queued_age,
         count(*) FILTER (WHERE finished_at OPERATOR(pg_catalog.>)
           (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '1 minute')) AS sent_last_minute
    FROM lambda_fdw.invocations
   GROUP BY function_name, region;
COMMENT ON VIEW lambda_fdw.queue_status_by_function IS
  'lambda_fdw''s after-commit queue in this database, per function and region';
GRANT SELECT ON lambda_fdw.queue_status_by_function TO PUBLIC;

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
REVOKE ALL ON FUNCTION lambda_fdw.retry(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION lambda_fdw.retry_failed(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION lambda_fdw.cancel(bigint) FROM PUBLIC;
