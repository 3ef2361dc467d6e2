-- Invocation statistics (lambda_fdw.stat_invocations) after a known
-- sequence of calls, their reset, what each role sees, and EXPLAIN ANALYZE.
-- The cluster has lambda_fdw in shared_preload_libraries. Calls go to the
-- wire stub through a server of a region no other suite uses.
\set VERBOSITY terse
CREATE SERVER stat_stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'eu-west-3', endpoint_url 'http://127.0.0.1:45661', request_timeout_ms '300');
CREATE USER MAPPING FOR CURRENT_USER SERVER stat_stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
-- Nothing listens on port 1: every call there is refused.
CREATE SERVER stat_nowhere FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'eu-south-2', endpoint_url 'http://127.0.0.1:1', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER stat_nowhere
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE stat_echo (payload jsonb, status_code int, response jsonb)
  SERVER stat_stub OPTIONS (function_name 'echo');
CREATE FOREIGN TABLE stat_failing (payload jsonb, response jsonb, function_error text)
  SERVER stat_stub OPTIONS (function_name 'handled-error', function_errors 'return');
CREATE FOREIGN TABLE stat_flaky (payload jsonb, response jsonb)
  SERVER stat_stub OPTIONS (function_name 'flaky');
CREATE FOREIGN TABLE stat_slow (payload jsonb, response jsonb)
  SERVER stat_stub OPTIONS (function_name 'sleep-echo');
CREATE FOREIGN TABLE stat_refused (payload jsonb, response jsonb)
  SERVER stat_nowhere OPTIONS (function_name 'echo');

SELECT lambda_fdw.stat_invocations_reset();
SELECT count(*) FROM lambda_fdw.stat_invocations;

-- The known sequence. Three calls of a fan-out and one aws_lambda.invoke,
-- all answered:
SELECT payload, status_code FROM stat_echo WHERE payload IN ('{"n": 1}', '{"n": 2}', '{"n": 3}') ORDER BY payload;
SELECT status_code FROM aws_lambda.invoke('echo', '{"n": 4}'::jsonb, 'eu-west-3');
-- a function error (returned as a row), and another raised by aws_lambda.invoke:
SELECT function_error FROM stat_failing WHERE payload = '{}';
SELECT status_code FROM aws_lambda.invoke('handled-error', '{}'::json, 'eu-west-3');
-- throttled once, then served (one call, one retry):
SELECT response->'attempts' AS attempts FROM stat_flaky
  WHERE payload = '{"key": "stats-t1", "fail": 1, "status": 429, "retry_after": "0"}';
-- throttled on every attempt (max_attempts 3: one call, two retries):
SELECT response FROM stat_flaky
  WHERE payload = '{"key": "stats-t2", "fail": 9, "status": 429, "retry_after": "0"}';
-- no answer within request_timeout_ms (never retried):
SELECT response FROM stat_slow WHERE payload = '{"key": "stats-s1", "ms": 1500}';
-- a 404 and a 500 (retried twice, then given up):
SELECT status_code FROM aws_lambda.invoke('no-such-function', '{}'::json, 'eu-west-3');
SELECT status_code FROM aws_lambda.invoke('server-error', '{}'::json, 'eu-west-3');
-- refused connections:
SELECT response FROM stat_refused WHERE payload = '{"n": 5}';
-- Checked before sending: not a call, not counted.
SELECT status_code FROM aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', 'Sometimes');

-- Exactly those counts. Every call has one outcome, so the outcome columns
-- add up to calls.
\x on
SELECT database = current_database() AS this_database, role, server, function_name,
       calls, succeeded, function_errors, throttled, client_errors, service_errors,
       timeouts, connect_errors, retries, bytes_sent, bytes_received, last_error,
       succeeded + function_errors + throttled + client_errors + service_errors
         + timeouts + connect_errors = calls AS outcomes_add_up,
       min_time_ms <= mean_time_ms AND mean_time_ms <= max_time_ms
         AND abs(mean_time_ms * calls - total_time_ms) < 0.001 AS times_consistent,
       (last_error IS NULL) = (last_error_at IS NULL) AS error_time_iff_error,
       last_call_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS recent
  FROM lambda_fdw.stat_invocations
 ORDER BY server, function_name;
\x off
-- The timeout really waited for the limit, and no more than its second.
SELECT min_time_ms >= 300 AND max_time_ms < 1300 AS waited_for_the_limit
  FROM lambda_fdw.stat_invocations WHERE function_name = 'sleep-echo';
-- One call of a 3-payload fan-out runs beside the others.
SELECT calls, max_time_ms < 1000 AS quick FROM lambda_fdw.stat_invocations WHERE function_name = 'echo' AND server = 'stat_stub';

-- EXPLAIN ANALYZE counts the scan's calls; EXPLAIN alone calls nothing.
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT payload, response FROM stat_echo WHERE payload IN ('{"e": 1}', '{"e": 2}', '{"e": 3}');
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT response FROM stat_flaky
  WHERE payload = '{"key": "stats-t3", "fail": 1, "status": 429, "retry_after": "0"}';
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT function_error FROM stat_failing WHERE payload IN ('{"f": 1}', '{"f": 2}');
EXPLAIN (COSTS OFF)
  SELECT payload, response FROM stat_echo WHERE payload IN ('{"x": 1}', '{"x": 2}');
-- With timing, the time waited on Lambda is there too (its value varies).
CREATE FUNCTION stat_explain_json(q text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE p json;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO p;
  RETURN p::jsonb;
END $$;
SELECT p->0->'Plan'->'Lambda Invocations' AS invocations,
       p->0->'Plan'->'Lambda Peak Concurrency' AS peak,
       jsonb_typeof(p->0->'Plan'->'Lambda Wait Time') AS wait_time
  FROM stat_explain_json($q$SELECT response FROM stat_echo WHERE payload IN ('{"j": 1}', '{"j": 2}')$q$) p;
-- Those EXPLAIN ANALYZE calls were counted like any other.
SELECT function_name, calls, retries, function_errors FROM lambda_fdw.stat_invocations
 WHERE server = 'stat_stub' AND function_name IN ('echo', 'flaky', 'handled-error')
 ORDER BY function_name;

-- At most lambda_fdw.stat_max_entries entries: a new key in a full table
-- first evicts the least recently used 5% of the entries (here 50) at once.
-- 1,000 qualifiers fill the table; using v1 again leaves v2..v51 the 50
-- least recent, so v1001 evicts them and 951 entries are left.
SHOW lambda_fdw.stat_max_entries;
SELECT lambda_fdw.stat_invocations_reset();
SELECT count(*) FROM generate_series(1, 1000) i,
  LATERAL aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', qualifier => 'v' || i) r
 WHERE r.status_code = 200;
SELECT count(*), sum(calls) FROM lambda_fdw.stat_invocations;
SELECT status_code FROM aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', qualifier => 'v1');
SELECT status_code FROM aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', qualifier => 'v1001');
CREATE VIEW stat_qualifiers AS
  SELECT count(*) AS entries, sum(calls) AS calls,
         count(*) FILTER (WHERE function_name = 'echo:v1') AS v1,
         max(calls) FILTER (WHERE function_name = 'echo:v1') AS v1_calls,
         min(substr(function_name, 7)::int) FILTER (WHERE function_name <> 'echo:v1') AS oldest_kept,
         max(substr(function_name, 7)::int) AS newest
    FROM lambda_fdw.stat_invocations WHERE function_name LIKE 'echo:v%';
SELECT * FROM stat_qualifiers;
SELECT count(*) FILTER (WHERE function_name = 'echo:v2') AS v2,
       count(*) FILTER (WHERE function_name = 'echo:v51') AS v51,
       count(*) FILTER (WHERE function_name = 'echo:v52') AS v52,
       count(*) FILTER (WHERE function_name = 'echo:v1001') AS v1001
  FROM lambda_fdw.stat_invocations;
-- The next 49 new keys fill the table again without evicting; the one
-- after them evicts the next 50 least recent (v52..v101).
SELECT count(*) FROM generate_series(1002, 1050) i,
  LATERAL aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', qualifier => 'v' || i) r
 WHERE r.status_code = 200;
SELECT * FROM stat_qualifiers;
SELECT status_code FROM aws_lambda.invoke('echo', '{}'::json, 'eu-west-3', qualifier => 'v1051');
SELECT * FROM stat_qualifiers;
DROP VIEW stat_qualifiers;

-- What each role sees: its own rows; superusers and pg_read_all_stats, all.
SELECT lambda_fdw.stat_invocations_reset();
CREATE ROLE stat_alice;
CREATE ROLE stat_bob;
GRANT USAGE ON FOREIGN SERVER stat_stub TO stat_alice, stat_bob;
CREATE USER MAPPING FOR stat_alice SERVER stat_stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE USER MAPPING FOR stat_bob SERVER stat_stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
GRANT SELECT ON stat_echo TO stat_alice, stat_bob;
GRANT USAGE ON SCHEMA aws_lambda TO stat_bob;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO stat_bob;
SET ROLE stat_alice;
SELECT status_code FROM stat_echo WHERE payload = '{"who": "alice"}';
SELECT role, function_name, calls FROM lambda_fdw.stat_invocations;
SET ROLE stat_bob;
SELECT status_code FROM stat_echo WHERE payload IN ('{"who": "bob", "n": 1}', '{"who": "bob", "n": 2}');
SELECT status_code FROM aws_lambda.invoke('echo', '{"who": "bob"}'::json, 'eu-west-3');
SELECT role, function_name, calls FROM lambda_fdw.stat_invocations;
-- Resetting is for superusers, or whoever they grant it to.
SELECT lambda_fdw.stat_invocations_reset();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT role, function_name, calls FROM lambda_fdw.stat_invocations ORDER BY role;
GRANT pg_read_all_stats TO stat_alice;
SET ROLE stat_alice;
SELECT role, function_name, calls FROM lambda_fdw.stat_invocations ORDER BY role;
RESET ROLE;
GRANT EXECUTE ON FUNCTION lambda_fdw.stat_invocations_reset() TO stat_bob;
SET ROLE stat_bob;
SELECT lambda_fdw.stat_invocations_reset();
RESET ROLE;
SELECT count(*) FROM lambda_fdw.stat_invocations;

-- The view's exact shape.
SELECT attnum, attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'lambda_fdw.stat_invocations'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT has_function_privilege('public', 'lambda_fdw.stat_invocations_reset()', 'EXECUTE') AS public_may_reset,
       has_table_privilege('public', 'lambda_fdw.stat_invocations', 'SELECT') AS public_may_read;

REVOKE EXECUTE ON FUNCTION lambda_fdw.stat_invocations_reset() FROM stat_bob;
REVOKE pg_read_all_stats FROM stat_alice;
DROP OWNED BY stat_alice, stat_bob;
DROP ROLE stat_alice, stat_bob;
DROP FUNCTION stat_explain_json(text);
DROP SERVER stat_stub, stat_nowhere CASCADE;
