-- Payloads from the database's own data: subqueries, arrays of a query's
-- rows, joins, LATERAL and correlated references, SQL functions, PL/pgSQL,
-- prepared statements and cursors. ministack runs `echo` on 127.0.0.1:45660;
-- the wire stub (127.0.0.1:45661) counts calls of `counted-echo`.
\set VERBOSITY default
CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1', max_concurrency '4');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE echo (payload jsonb, qualifier text, status_code int, response jsonb)
  SERVER ms OPTIONS (function_name 'echo');
CREATE TABLE docs (id int PRIMARY KEY, doc jsonb);
INSERT INTO docs SELECT i, jsonb_build_object('n', i) FROM generate_series(1, 20) i;
ANALYZE docs;

-- What a new user tries first: each gives the 20 rows.
SELECT count(*) FROM echo WHERE payload = ANY(ARRAY(SELECT doc FROM docs));
SELECT count(*) FROM echo WHERE payload = ANY((SELECT array_agg(doc) FROM docs)::jsonb[]);
SELECT count(*) FROM echo WHERE payload IN (SELECT doc FROM docs);
SELECT count(*) FROM docs d JOIN echo e ON e.payload = d.doc;
SELECT count(*) FROM docs d CROSS JOIN LATERAL (SELECT response FROM echo WHERE payload = d.doc) r;
SELECT count(*) FROM docs d CROSS JOIN LATERAL (SELECT response FROM echo WHERE payload = d.doc OFFSET 0) r;
SELECT count(*) FROM docs d WHERE (SELECT response FROM echo WHERE payload = d.doc) = d.doc;

-- Exact rows. A fan-out over a subquery keeps the array's order.
SELECT payload, response FROM echo
 WHERE payload = ANY(ARRAY(SELECT doc FROM docs WHERE id <= 5 ORDER BY id DESC));
SELECT payload, response FROM echo
 WHERE payload = ANY((SELECT array_agg(doc ORDER BY id) FROM docs WHERE id IN (3, 9, 4))::jsonb[]);
-- Without the cast PostgreSQL reads `= ANY((SELECT ...))` as `= ANY(SELECT ...)`,
-- a comparison with each row of the subquery (here: jsonb with jsonb[]).
SELECT count(*) FROM echo WHERE payload = ANY((SELECT array_agg(doc) FROM docs));
SELECT response FROM echo WHERE payload = (SELECT doc FROM docs WHERE id = 7);
SELECT d.id, e.response FROM docs d JOIN echo e ON e.payload = d.doc WHERE d.id <= 3 ORDER BY d.id;
SELECT d.id, r.response FROM docs d, LATERAL (SELECT response FROM echo WHERE payload = d.doc) r
 WHERE d.id BETWEEN 4 AND 6 ORDER BY d.id;
SELECT d.id, (SELECT response->'n' FROM echo WHERE payload = d.doc) AS n FROM docs d WHERE d.id > 17 ORDER BY d.id;
SELECT payload FROM echo WHERE payload IN (SELECT doc FROM docs WHERE id % 5 = 0) ORDER BY payload->'n';
-- Other request columns can come from data too.
SELECT qualifier, response FROM echo
 WHERE payload = (SELECT doc FROM docs WHERE id = 1) AND qualifier = (SELECT '$LATEST');
SELECT status_code FROM echo WHERE payload = '{}' AND qualifier = (SELECT 'no such alias!');
\echo :LAST_ERROR_SQLSTATE

-- NULLs invoke nothing and give no row, as = never matches NULL; the other
-- values still invoke.
SELECT count(*) FROM echo WHERE payload = (SELECT doc FROM docs WHERE id = 99);
SELECT count(*) FROM echo WHERE payload = (SELECT NULL::jsonb);
SELECT payload FROM echo WHERE payload = ANY(ARRAY(SELECT CASE WHEN id % 2 = 0 THEN doc END FROM docs WHERE id <= 6 ORDER BY id));
SELECT payload FROM echo WHERE payload = ANY(ARRAY['{"a": 1}', NULL, '{"a": 2}']::jsonb[]);
SELECT count(*) FROM echo WHERE payload = ANY(ARRAY(SELECT doc FROM docs WHERE false));
INSERT INTO docs VALUES (21, NULL);
SELECT count(*) FROM docs d JOIN echo e ON e.payload = d.doc;
SELECT count(*) FROM docs d LEFT JOIN LATERAL (SELECT response FROM echo WHERE payload = d.doc) r ON true WHERE r.response IS NULL;
DELETE FROM docs WHERE id = 21;
-- A scan with no payload still never invokes, and the hint shows the forms above.
SELECT * FROM echo WHERE qualifier = (SELECT '1');

-- EXPLAIN tells where the payloads come from (a value computed elsewhere in
-- the plan shows as its parameter).
EXPLAIN (COSTS OFF) SELECT count(*) FROM echo WHERE payload = ANY(ARRAY(SELECT doc FROM docs));
EXPLAIN (COSTS OFF) SELECT e.response FROM docs d JOIN echo e ON e.payload = d.doc;
EXPLAIN (COSTS OFF) SELECT response FROM echo WHERE payload = '{"a": 1}' AND qualifier IN ('1', '2');
-- Conditions on results stay in the filter; the request conditions are the scan's.
EXPLAIN (COSTS OFF) SELECT response FROM echo WHERE payload = '{"a": 1}' AND status_code = 200;

-- Rescans: a changed value invokes again, an unchanged one replays what came back.
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45661', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE counted (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'counted-echo');
CREATE FOREIGN TABLE calls (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'calls');
SET enable_memoize = off;
SELECT v.i, r.response->>'key' AS key
  FROM (VALUES (1, 'rescan-a'), (2, 'rescan-a'), (3, 'rescan-b'), (4, 'rescan-a')) v(i, k),
       LATERAL (SELECT response FROM counted WHERE payload = jsonb_build_object('key', v.k) OFFSET 0) r
 ORDER BY v.i;
SELECT payload->>'key' AS key, response->'calls' AS calls FROM calls
 WHERE payload IN ('{"of": "counted-echo", "key": "rescan-a"}', '{"of": "counted-echo", "key": "rescan-b"}');
-- The inner side of a plain nested loop with a constant payload: invoked once.
SELECT v.i, c.response->>'key' AS key FROM (VALUES (1), (2), (3)) v(i)
  CROSS JOIN counted c WHERE c.payload = '{"key": "rescan-c"}' ORDER BY v.i;
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "rescan-c"}';
RESET enable_memoize;
-- A fan-out over a subquery sends each distinct payload once, and lazily:
-- LIMIT 1 starts at most 2 x max_concurrency calls.
SELECT count(*) FROM counted WHERE payload = ANY(ARRAY(SELECT '{"key": "dup"}'::jsonb FROM generate_series(1, 5)));
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "dup"}';
ALTER FOREIGN TABLE counted OPTIONS (ADD max_concurrency '2');
SELECT response->>'key' AS key FROM counted
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'lazy' || i) FROM generate_series(1, 20) i)) LIMIT 1;
SELECT sum((response->>'calls')::int) BETWEEN 1 AND 4 AS at_most_four_calls FROM calls
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('of', 'counted-echo', 'key', 'lazy' || i) FROM generate_series(1, 20) i));
ALTER FOREIGN TABLE counted OPTIONS (DROP max_concurrency);

-- Fan-outs over several request columns: one invocation per combination of
-- their values (payloads slowest, contexts fastest), each sent once, with
-- duplicates and NULLs as above.
CREATE FOREIGN TABLE counted_requests (payload jsonb, invocation_type text, context jsonb, status_code int)
  SERVER stub OPTIONS (function_name 'counted-echo');
SELECT payload->>'key' AS key, context, status_code FROM counted_requests
 WHERE payload = ANY(ARRAY['{"key": "product-a"}', '{"key": "product-b"}', NULL, '{"key": "product-a"}']::jsonb[])
   AND context = ANY(ARRAY['{"c": 2}', '{"c": 1}', NULL, '{"c": 2}']::jsonb[]);
SELECT payload->>'key' AS key, response->'calls' AS calls FROM calls
 WHERE payload IN ('{"of": "counted-echo", "key": "product-a"}', '{"of": "counted-echo", "key": "product-b"}');
-- Above lambda_fdw.max_scan_invocations nothing is sent; at it, every call is.
SET lambda_fdw.max_scan_invocations = 5;
SELECT count(*) FROM counted_requests
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'capped', 'i', i) FROM generate_series(1, 3) i))
   AND context IN ('{"c": 1}', '{"c": 2}');
\echo :LAST_ERROR_SQLSTATE
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "capped"}';
SET lambda_fdw.max_scan_invocations = 6;
SELECT count(*) FROM counted_requests
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'capped', 'i', i) FROM generate_series(1, 3) i))
   AND context IN ('{"c": 1}', '{"c": 2}');
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "capped"}';
RESET lambda_fdw.max_scan_invocations;
-- A bad value is found before the first call, wherever it is in the product:
-- the last context, the last payload as an Event.
\set VERBOSITY terse
SELECT count(*) FROM counted_requests
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'checked', 'i', i) FROM generate_series(1, 50) i))
   AND context IN ('{"c": 1}', '[2]');
SELECT count(*) FROM counted_requests
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'checked', 'i', i, 'pad', repeat('x', i * 110000)) FROM generate_series(1, 10) i))
   AND invocation_type IN ('RequestResponse', 'Event');
\set VERBOSITY default
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "checked"}';
-- A top-level fan-out forgets each row once returned; nothing scans it again:
-- a cursor held past COMMIT keeps only the rows not yet fetched.
BEGIN;
DECLARE held NO SCROLL CURSOR WITH HOLD FOR
  SELECT payload->>'i' AS i FROM counted
   WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('key', 'held', 'i', i) FROM generate_series(1, 5) i));
FETCH 2 FROM held;
COMMIT;
FETCH ALL FROM held;
CLOSE held;
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "held"}';
-- A scan that PostgreSQL scans again without telling it beforehand (below a
-- correlated subquery's one-time filter, rescanned for every outer row)
-- keeps its rows and replays them: invoked once.
SELECT d.id, (SELECT count(*) FROM counted c WHERE c.payload = '{"key": "one-time"}' AND d.id > 0) AS n
  FROM docs d WHERE d.id <= 3 ORDER BY d.id;
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"of": "counted-echo", "key": "one-time"}';

-- A SQL function over a foreign table, called for many rows.
CREATE FUNCTION sql_echo(p jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT response FROM echo WHERE payload = p
$$;
SELECT id, sql_echo(doc) FROM docs WHERE id <= 3 ORDER BY id;
SELECT count(*) FILTER (WHERE sql_echo(doc) = doc) FROM docs;

-- PL/pgSQL: a loop of 100 calls with a variable payload, under both plan cache modes.
CREATE FUNCTION loop_calls(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r jsonb; total bigint := 0;
BEGIN
  FOR i IN 1..n LOOP
    SELECT response INTO r FROM counted WHERE payload = jsonb_build_object('i', i);
    total := total + (r->>'i')::int;
  END LOOP;
  RETURN total;
END $$;
SELECT loop_calls(100);
SET plan_cache_mode = force_generic_plan;
SELECT loop_calls(100);
RESET plan_cache_mode;

-- Prepared statements, 10 executions each, under both plan cache modes.
PREPARE one(jsonb) AS SELECT response->'i' AS i FROM counted WHERE payload = $1;
PREPARE many(jsonb[]) AS SELECT count(*), sum((response->>'i')::int) FROM counted WHERE payload = ANY($1);
SELECT format('EXECUTE one(%L)', jsonb_build_object('i', i)) FROM generate_series(1, 10) i \gexec
SELECT format('EXECUTE many(ARRAY[%L, %L, %L]::jsonb[])', jsonb_build_object('i', i),
              jsonb_build_object('i', i + 1), jsonb_build_object('i', i + 2)) FROM generate_series(1, 10) i \gexec
SET plan_cache_mode = force_generic_plan;
PREPARE one_generic(jsonb) AS SELECT response->'i' AS i FROM counted WHERE payload = $1;
PREPARE many_generic(jsonb[]) AS SELECT count(*), sum((response->>'i')::int) FROM counted WHERE payload = ANY($1);
SELECT format('EXECUTE one_generic(%L)', jsonb_build_object('i', i)) FROM generate_series(1, 10) i \gexec
SELECT format('EXECUTE many_generic(ARRAY[%L, %L, NULL]::jsonb[])', jsonb_build_object('i', i),
              jsonb_build_object('i', i * 10)) FROM generate_series(1, 10) i \gexec
RESET plan_cache_mode;
SELECT name, generic_plans > 0 AS generic_used FROM pg_prepared_statements
 WHERE name LIKE '%generic' ORDER BY name;

-- A cursor over a fan-out from data, fetched in pieces and scrolled.
BEGIN;
DECLARE c SCROLL CURSOR FOR
  SELECT payload->'n' AS n FROM echo WHERE payload = ANY(ARRAY(SELECT doc FROM docs ORDER BY id));
FETCH 3 FROM c;
FETCH 2 FROM c;
FETCH LAST FROM c;
FETCH FIRST FROM c;
CLOSE c;
COMMIT;

-- A lambda_fdw scan no longer makes the backend plan its other prepared
-- statements again: with log_planner_stats, every planning prints a LOG line.
PREPARE other AS SELECT count(*) FROM docs;
SET plan_cache_mode = force_generic_plan;
EXECUTE other;
\set VERBOSITY terse
SET client_min_messages = log;
SET log_planner_stats = on;
EXECUTE other;
SELECT response FROM echo WHERE payload = '{"planned": "once"}';
EXECUTE other;
RESET log_planner_stats;
RESET client_min_messages;
RESET plan_cache_mode;
\set VERBOSITY default

-- Errors inside a data-driven fan-out end the statement; the session goes on.
CREATE FOREIGN TABLE fail (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'fail');
SELECT count(*) FROM docs d JOIN fail f ON f.payload = d.doc;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM echo WHERE payload = ANY(ARRAY(SELECT doc FROM docs));

SET client_min_messages = warning;
DROP SERVER ms, stub CASCADE;
DROP TABLE docs;
RESET client_min_messages;
