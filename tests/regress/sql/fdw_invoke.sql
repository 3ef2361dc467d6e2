-- Invoking Lambda functions through foreign tables: ministack runs the fixture
-- functions on 127.0.0.1:45660; the wire stub answers on 127.0.0.1:45661.
\set VERBOSITY default
CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');

CREATE FOREIGN TABLE echo (
  payload jsonb, qualifier text, invocation_type text, log_type text, context jsonb,
  status_code int, response jsonb, executed_version text, log_result text, function_error text
) SERVER ms OPTIONS (function_name 'echo');

-- One payload, one invocation, one row; request columns echo the request.
SELECT * FROM echo WHERE payload = '{"key": "a.jpg"}';

-- IN and = ANY fan out: one invocation per distinct payload, rows in request order.
SELECT payload, status_code, response FROM echo
 WHERE payload IN ('{"n": 3}', '{"n": 1}', '{"n": 2}', '{"n": 1}');
SELECT payload, response FROM echo WHERE payload = ANY ('{"[1, 2]", "\"text\"", 42, null}'::jsonb[]);

-- Several conditions on payload: only the payloads all of them allow are sent.
SELECT payload, response FROM echo WHERE payload IN ('1', '2') AND payload IN ('2', '3');
-- Conditions on result columns filter the rows.
SELECT payload FROM echo WHERE payload IN ('{"n": 1}', '{"n": 2}') AND status_code = 200;
SELECT payload FROM echo WHERE payload IN ('{"n": 1}', '{"n": 2}') AND status_code = 500;

-- Any subset of the columns, in any order; response may be json (text as returned).
CREATE FOREIGN TABLE echo_json (response json, payload jsonb) SERVER ms OPTIONS (function_name 'echo');
SELECT response, payload FROM echo_json WHERE payload = '{"b": [1, 2], "a": 1}';
SELECT * FROM echo_json WHERE payload = '{"z": 1}';

-- Asynchronous and dry-run invocations.
SELECT status_code, response, invocation_type FROM echo WHERE payload = '{}' AND invocation_type = 'Event';
SELECT status_code, response, invocation_type FROM echo WHERE payload = '{}' AND invocation_type = 'DryRun';
SELECT status_code FROM echo WHERE payload = '{}' AND invocation_type = 'event';
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo WHERE payload = '{}' AND log_type = 'tail';
\echo :LAST_ERROR_SQLSTATE

-- Versions and aliases: "versioned" has version 1 (alias prod) and different code at $LATEST.
CREATE FOREIGN TABLE versioned (payload jsonb, qualifier text, executed_version text, response jsonb)
  SERVER ms OPTIONS (function_name 'versioned');
SELECT qualifier, executed_version, response FROM versioned
 WHERE payload = '{}' AND qualifier IN ('prod', '1', '$LATEST');
SELECT qualifier, executed_version, response FROM versioned WHERE payload = '{}';
CREATE FOREIGN TABLE versioned_prod (payload jsonb, qualifier text, executed_version text, response jsonb)
  SERVER ms OPTIONS (function_name 'versioned:prod');
SELECT qualifier, executed_version, response FROM versioned_prod WHERE payload = '{}';
SELECT response FROM versioned_prod WHERE payload = '{}' AND qualifier = '1';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE versioned_opt (payload jsonb, qualifier text, executed_version text)
  SERVER ms OPTIONS (function_name 'arn:aws:lambda:us-east-1:000000000000:function:versioned', qualifier '1');
SELECT qualifier, executed_version FROM versioned_opt WHERE payload = '{}';
CREATE FOREIGN TABLE versioned_partial (payload jsonb, executed_version text, response jsonb)
  SERVER ms OPTIONS (function_name '000000000000:function:versioned:prod');
SELECT executed_version, response FROM versioned_partial WHERE payload = '{}';

-- The log tail, decoded as the RDS guide does.
CREATE FOREIGN TABLE logger (payload jsonb, log_type text, log_result text, response jsonb)
  SERVER ms OPTIONS (function_name 'logger');
SELECT response, log_result IS NULL AS no_log FROM logger WHERE payload = '{"name": "ann"}';
SELECT response, position('lambda_fdw log line for bob' IN convert_from(decode(log_result, 'base64'), 'utf-8')) > 0 AS logged
  FROM logger WHERE payload = '{"name": "bob"}' AND log_type = 'Tail';

-- Function errors raise by default, or come back as rows.
CREATE FOREIGN TABLE fail (payload jsonb, status_code int, function_error text, response jsonb)
  SERVER ms OPTIONS (function_name 'fail');
SELECT * FROM fail WHERE payload = '{"reason": "too big"}';
\echo :LAST_ERROR_SQLSTATE
ALTER FOREIGN TABLE fail OPTIONS (ADD function_errors 'return');
SELECT status_code, function_error, response->>'errorMessage' AS message FROM fail WHERE payload = '{"reason": "too big"}';

-- API errors (terse: the DETAIL carries a request id that changes every run).
\set VERBOSITY terse
CREATE FOREIGN TABLE nope (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'nope');
SELECT response FROM nope WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE throttled (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'throttled');
SELECT response FROM throttled WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- A scan without a payload never invokes.
SELECT * FROM echo;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM echo LIMIT 100;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM echo WHERE qualifier = '1';
\echo :LAST_ERROR_SQLSTATE

-- Payloads from subqueries, joins and LATERAL: see fdw_data.

-- Prepared statements: custom and generic plans.
PREPARE by_payload(jsonb) AS SELECT response FROM echo WHERE payload = $1;
EXECUTE by_payload('{"p": 1}');
SET plan_cache_mode = force_generic_plan;
PREPARE by_payload_generic(jsonb) AS SELECT response FROM echo WHERE payload = $1;
EXECUTE by_payload_generic('{"p": 2}');
EXECUTE by_payload_generic('{"p": 3}');
EXECUTE by_payload_generic('{"p": 4}');
RESET plan_cache_mode;

-- Plans that PL/pgSQL caches run again and again.
CREATE FUNCTION fixed_call() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  SELECT response INTO r FROM echo WHERE payload = '{"fixed": true}';
  RETURN r;
END $$;
SELECT i, fixed_call() FROM generate_series(1, 3) i;
CREATE FUNCTION dynamic_call(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  EXECUTE 'SELECT response FROM echo WHERE payload = $1' INTO r USING p;
  RETURN r;
END $$;
SELECT dynamic_call(jsonb_build_object('i', i)) FROM generate_series(1, 3) i;
-- A PL/pgSQL variable as the payload, under both plan cache modes.
CREATE FUNCTION variable_call(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  SELECT response INTO r FROM echo WHERE payload = p;
  RETURN r;
END $$;
SELECT i, variable_call(jsonb_build_object('v', i)) FROM generate_series(1, 8) i;
SET plan_cache_mode = force_generic_plan;
SELECT variable_call('{"v": 9}');
RESET plan_cache_mode;
-- A SQL function runs one plan for every call of a statement.
CREATE FUNCTION sql_call(p jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT response FROM echo WHERE payload = p
$$;
SELECT sql_call('{"s": 1}');
SELECT sql_call(jsonb_build_object('s', i)) FROM generate_series(1, 2) i;

-- LIMIT and rescans.
SELECT response FROM echo WHERE payload IN ('{"l": 1}', '{"l": 2}', '{"l": 3}') LIMIT 1;
SELECT v.i, e.response FROM (VALUES (1), (2)) v(i) CROSS JOIN echo e WHERE e.payload = '{"r": 1}' ORDER BY v.i;

-- Limits checked before sending.
SELECT status_code FROM echo WHERE payload = ('{"k": "' || repeat('x', 6 * 1024 * 1024) || '"}')::jsonb;
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo WHERE payload = ('{"k": "' || repeat('x', 1024 * 1024) || '"}')::jsonb AND invocation_type = 'Event';
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo WHERE payload = ('{"k": "' || repeat('x', 1000 * 1000) || '"}')::jsonb AND invocation_type = 'Event';
SELECT status_code FROM echo WHERE payload = '{}' AND context = ('{"custom": "' || repeat('x', 3000) || '"}')::jsonb;
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo WHERE payload = '{}' AND context = '[1]';
\echo :LAST_ERROR_SQLSTATE
-- Every value of a fan-out is checked before its first call, and the error is
-- the one the first bad request in order meets (payloads slowest, contexts fastest).
SELECT status_code FROM echo
 WHERE payload IN ('{"a": 1}', '{"a": 2}') AND qualifier IN ('$LATEST', 'no such alias!') AND context IN ('{}', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo
 WHERE payload IN ('{"a": 1}', '{"a": 2}') AND qualifier IN ('no such alias!', '$LATEST') AND context IN ('{}', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM echo
 WHERE payload IN ('{}', ('{"k": "' || repeat('x', 1024 * 1024) || '"}')::jsonb)
   AND invocation_type IN ('RequestResponse', 'Event');
\echo :LAST_ERROR_SQLSTATE

-- A scan makes at most lambda_fdw.max_scan_invocations invocations: one per
-- combination of its request columns' values, counted before any call.
SHOW lambda_fdw.max_scan_invocations;
SELECT count(*) FROM echo
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('p', i) FROM generate_series(1, 101) i))
   AND context = ANY(ARRAY(SELECT jsonb_build_object('c', i) FROM generate_series(1, 100) i));
\echo :LAST_ERROR_SQLSTATE
SET lambda_fdw.max_scan_invocations = 5;
-- 4 (2 payloads x 2 log types, duplicates and NULLs not counted): under the limit.
SELECT payload, log_type, status_code FROM echo
 WHERE payload = ANY(ARRAY['{"n": 2}', NULL, '{"n": 1}', '{"n": 2}']::jsonb[]) AND log_type IN ('None', 'Tail', 'None');
-- 6: over it.
SELECT payload, log_type, status_code FROM echo
 WHERE payload IN ('{"n": 2}', '{"n": 1}', '{"n": 3}') AND log_type IN ('None', 'Tail');
\echo :LAST_ERROR_SQLSTATE
SET lambda_fdw.max_scan_invocations = 0;
RESET lambda_fdw.max_scan_invocations;

-- Time limits: request_timeout_ms, and statement_timeout interrupting a call.
CREATE SERVER ms_short FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', request_timeout_ms '2000', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms_short
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE slow_short (payload jsonb, response jsonb) SERVER ms_short OPTIONS (function_name 'slow');
SELECT response FROM slow_short WHERE payload = '{"seconds": 0.1}';
SELECT response FROM slow_short WHERE payload = '{"seconds": 4}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE slow (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'slow');
SET statement_timeout = '500ms';
SELECT response FROM slow WHERE payload = '{"seconds": 3}';
\echo :LAST_ERROR_SQLSTATE
SELECT response FROM slow WHERE payload IN ('{"seconds": 3}', '{"seconds": 2.5}');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT response FROM echo WHERE payload = '{"after": "timeout"}';

-- Unreachable endpoint.
CREATE SERVER nowhere FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:9', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER nowhere
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE unreachable (payload jsonb, response jsonb) SERVER nowhere OPTIONS (function_name 'echo');
SELECT response FROM unreachable WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE

-- No user mapping: the server process's default AWS chain, which has nothing here.
CREATE SERVER nomapping FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1');
CREATE FOREIGN TABLE nocreds (payload jsonb, response jsonb) SERVER nomapping OPTIONS (function_name 'echo');
SELECT response FROM nocreds WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE

-- role_arn: the mapping's keys assume the role with STS (ministack's STS here),
-- and the call is signed with the role's temporary credentials.
CREATE SERVER ms_role FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms_role
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key',
           role_arn 'arn:aws:iam::000000000000:role/lambda-invoker', external_id 'ext-1');
CREATE FOREIGN TABLE echo_as_role (payload jsonb, response jsonb) SERVER ms_role OPTIONS (function_name 'echo');
SELECT response FROM echo_as_role WHERE payload = '{"via": "role"}';
-- An endpoint without STS: the role cannot be assumed, and the error says so.
CREATE SERVER stub_role FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-west-2', endpoint_url 'http://127.0.0.1:45661', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub_role
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key',
           role_arn 'arn:aws:iam::000000000000:role/lambda-invoker');
CREATE FOREIGN TABLE echo_no_sts (payload jsonb, response jsonb) SERVER stub_role OPTIONS (function_name 'echo');
SELECT response FROM echo_no_sts WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE

-- Wire cases from the stub: the headers sent, a Handled error, a body that is not JSON, a 500.
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45661', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE inspect (payload jsonb, qualifier text, log_type text, context jsonb, response jsonb, log_result text)
  SERVER stub OPTIONS (function_name 'inspect');
SELECT jsonb_pretty(response) FROM inspect
 WHERE payload = '{"q": 1}' AND context = '{"custom": {"tenant": "t1"}, "env": {"stage": "test"}}'
   AND qualifier = 'live' AND log_type = 'Tail';
SELECT convert_from(decode(log_result, 'base64'), 'utf-8') FROM inspect WHERE payload = '{}' AND log_type = 'Tail';
SELECT response->'client_context' AS sent_context FROM inspect WHERE payload = '{}';
CREATE FOREIGN TABLE handled (payload jsonb, function_error text, response jsonb) SERVER stub OPTIONS (function_name 'handled-error');
SELECT * FROM handled WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
ALTER FOREIGN TABLE handled OPTIONS (ADD function_errors 'return');
SELECT * FROM handled WHERE payload = '{}';
CREATE FOREIGN TABLE notjson (payload jsonb, status_code int, response jsonb) SERVER stub OPTIONS (function_name 'not-json');
SELECT response FROM notjson WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM notjson WHERE payload = '{}';
CREATE FOREIGN TABLE servererror (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'server-error');
\set VERBOSITY terse
SELECT response FROM servererror WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- EXPLAIN shows what will be called and with which conditions, never the credentials.
EXPLAIN (COSTS OFF) SELECT response FROM echo WHERE payload = '{"e": 1}';
-- ... and what an INSERT queues (EXPLAIN alone queues nothing).
EXPLAIN (COSTS OFF) INSERT INTO echo (payload) VALUES ('{"e": 2}');
SELECT count(*) FROM lambda_fdw.invocations WHERE payload = '{"e": 2}';

-- Leave no us-east-1 server behind for the aws_lambda suites.
SET client_min_messages = warning;
DROP SERVER ms, ms_short, nowhere, nomapping, stub, ms_role, stub_role CASCADE;
RESET client_min_messages;
