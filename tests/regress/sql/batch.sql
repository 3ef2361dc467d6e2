-- Many rows per invocation: the table options batch_size and batch_format.
-- ministack (127.0.0.1:45660) runs a real handler per format
-- (tests/fixtures: redshift_add, redshift_meta, bigquery_upper,
-- snowflake_concat, batch_double); the wire stub (127.0.0.1:45661) speaks
-- every format (batch-<format>, echoing each row's arguments), counts calls
-- per function name, and gives the faults ministack cannot.
\set VERBOSITY default
CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1', max_concurrency '4');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');

-- Redshift: add(a, b). A JSON array payload is the row's argument list.
CREATE FOREIGN TABLE add_rs (payload jsonb, status_code int, response jsonb, function_error text)
  SERVER ms OPTIONS (function_name 'redshift_add', batch_size '3', batch_format 'redshift');
SELECT payload, status_code, response FROM add_rs
 WHERE payload IN ('[1, 2]', '[10, 20]', '[null, 1]', '[1, 2]', '[5, 5]', '[-1, 1]', '[100, 1]');
CREATE TABLE pairs (id int PRIMARY KEY, a int, b int);
INSERT INTO pairs VALUES (1, 3, 4), (2, 30, 40), (3, 300, 400), (4, 3, 4), (5, 0, 0);
-- Rows of a query, in the query's order, each distinct payload sent once.
SELECT payload, response FROM add_rs
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs ORDER BY id));
-- A prepared statement, custom and generic plans.
PREPARE add_many(jsonb[]) AS SELECT payload, response FROM add_rs WHERE payload = ANY($1);
EXECUTE add_many(ARRAY['[1, 1]', '[2, 2]', '[3, 3]', '[4, 4]']::jsonb[]);
SET plan_cache_mode = force_generic_plan;
EXECUTE add_many(ARRAY['[5, 5]', '[6, 6]']::jsonb[]);
PREPARE add_one(int, int) AS SELECT response FROM add_rs WHERE payload = jsonb_build_array($1, $2);
EXECUTE add_one(20, 22);
RESET plan_cache_mode;
DEALLOCATE add_many;
DEALLOCATE add_one;
EXPLAIN (COSTS OFF) SELECT response FROM add_rs WHERE payload IN ('[1, 2]', '[3, 4]');
-- EXPLAIN ANALYZE's lambda_fdw lines (PostgreSQL 18 prints row counts
-- with decimals: the lines are picked out so every version gives these).
CREATE FUNCTION lambda_lines(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || query LOOP
    IF line ~ '^\s*Lambda (Invocations|Rows Sent|Retries|Function Errors|Peak Concurrency|Batch)' THEN
      RETURN NEXT line;
    END IF;
  END LOOP;
END $$;
SELECT lambda_lines('SELECT response FROM add_rs WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs))');
-- A join or LATERAL invokes once per outer row (a batch of one each).
SELECT lambda_lines('SELECT p.id, r.response FROM pairs p, LATERAL (SELECT response FROM add_rs WHERE payload = jsonb_build_array(p.a, p.b) OFFSET 0) r');

-- The metadata each request carries (the handler answers it per row).
CREATE FOREIGN TABLE meta (payload jsonb, response jsonb)
  SERVER ms OPTIONS (function_name 'redshift_meta', batch_size '2', batch_format 'redshift');
SELECT payload,
       response->'arguments' AS arguments,
       response->>'num_records' AS num_records,
       response->>'user' = current_user AS is_user,
       response->>'database' = current_database() AS is_database,
       response->>'external_function' AS external_function,
       response->>'cluster' = (SELECT system_identifier::text FROM pg_control_system()) AS cluster_is_system_id,
       response->>'request_id' ~ ('^' || pg_backend_pid() || '\.[0-9]+\.[0-9]+$') AS request_id_form,
       response->>'query_id' ~ ('^(-?[0-9]+|' || pg_backend_pid() || '\.[0-9]+)$') AS query_id_form
  FROM meta WHERE payload IN ('1', '"x"', '[1, 2]', '{"k": "v"}', 'null');
-- One request id per batch, one query id per statement.
SELECT count(DISTINCT response->>'request_id') AS requests, count(DISTINCT response->>'query_id') AS queries
  FROM meta WHERE payload IN ('1', '2', '3', '4', '5');
CREATE SCHEMA "Odd Schema";
CREATE FOREIGN TABLE "Odd Schema"."Meta Table" (payload jsonb, response jsonb)
  SERVER ms OPTIONS (function_name 'redshift_meta', batch_format 'redshift');
SELECT response->>'external_function' AS external_function, response->>'num_records' AS num_records
  FROM "Odd Schema"."Meta Table" WHERE payload = '1';

-- BigQuery: upper(s); errorMessage fails the batch.
CREATE FOREIGN TABLE upper_bq (payload jsonb, response jsonb, function_error text)
  SERVER ms OPTIONS (function_name 'bigquery_upper', batch_size '2', batch_format 'bigquery');
SELECT payload, response FROM upper_bq WHERE payload IN ('"a"', '"Bc"', 'null', '["de"]');
-- caller is //<cluster>/<database>/<table>; sessionUser the role.
SELECT response = to_jsonb('//' || (SELECT system_identifier FROM pg_control_system()) || '/'
                           || current_database() || '/public.upper_bq as ' || current_user) AS caller_and_user
  FROM upper_bq WHERE payload = '"caller"';
SELECT payload, response FROM upper_bq WHERE payload IN ('"a"', '"b"', '"fail"', '"c"');
-- With function_errors 'return', the failed batch's rows say so; the
-- other batch's rows have their results.
ALTER FOREIGN TABLE upper_bq OPTIONS (ADD function_errors 'return');
SELECT payload, response, function_error FROM upper_bq WHERE payload IN ('"a"', '"b"', '"fail"', '"c"');

-- Snowflake: concat(a, b), rows numbered in and out.
CREATE FOREIGN TABLE concat_sf (payload jsonb, response jsonb)
  SERVER ms OPTIONS (function_name 'snowflake_concat', batch_size '2', batch_format 'snowflake');
SELECT payload, response FROM concat_sf WHERE payload IN ('["a", "b"]', '["c", 1]', '["e", null]');

-- lambda_fdw's own format: an array of payloads in, an array of results out.
CREATE FOREIGN TABLE double (payload jsonb, response jsonb)
  SERVER ms OPTIONS (function_name 'batch_double', batch_size '4');
SELECT payload, response FROM double
 WHERE payload = ANY(ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 9) i));
EXPLAIN (COSTS OFF) SELECT response FROM double WHERE payload = '{"n": 1}';
-- An INSERT queues rows that the worker sends in batches.
EXPLAIN (COSTS OFF) INSERT INTO double (payload) VALUES ('{"n": 1}');

-- IMPORT FOREIGN SCHEMA sets the batch options on every table it makes.
CREATE SCHEMA imported;
IMPORT FOREIGN SCHEMA lambda LIMIT TO (redshift_add) FROM SERVER ms INTO imported
  OPTIONS (batch_size '50', batch_format 'redshift');
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'imported.redshift_add'::regclass;
SELECT response FROM imported.redshift_add WHERE payload IN ('[1, 1]', '[2, 2]');

-- The stub: every format echoes each row's arguments; calls are counted
-- per function name (the `calls` function).
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45661', max_attempts '1', max_concurrency '4');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE calls (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'calls');
CREATE FUNCTION calls_of(name text) RETURNS int LANGUAGE sql
  AS $$ SELECT (response->>'calls')::int FROM calls WHERE payload = jsonb_build_object('of', name, 'key', 'batch') $$;
CREATE FOREIGN TABLE rs (payload jsonb, response jsonb, function_error text)
  SERVER stub OPTIONS (function_name 'batch-redshift', batch_size '2', batch_format 'redshift');
CREATE FOREIGN TABLE bq (payload jsonb, response jsonb, function_error text)
  SERVER stub OPTIONS (function_name 'batch-bigquery', batch_size '2', batch_format 'bigquery');
CREATE FOREIGN TABLE sf (payload jsonb, response jsonb, function_error text)
  SERVER stub OPTIONS (function_name 'batch-snowflake', batch_size '2', batch_format 'snowflake');
CREATE FOREIGN TABLE lf (payload jsonb, response jsonb, function_error text)
  SERVER stub OPTIONS (function_name 'batch-lambda_fdw', batch_size '2');
-- Order and dedupe: 7 values, 5 distinct, 3 calls each.
SELECT 'rs' AS t, payload, response FROM rs WHERE payload IN ('1', '[2, "b"]', '1', '{"k": 3}', '[]', '"x"', '[2, "b"]')
UNION ALL
SELECT 'sf', payload, response FROM sf WHERE payload IN ('1', '[2, "b"]', '1', '{"k": 3}', '[]', '"x"', '[2, "b"]')
UNION ALL
SELECT 'lf', payload, response FROM lf WHERE payload IN ('1', '[2, "b"]', '1', '{"k": 3}', '[]', '"x"', '[2, "b"]');
SELECT calls_of('batch-redshift') AS redshift, calls_of('batch-snowflake') AS snowflake, calls_of('batch-lambda_fdw') AS lambda_fdw;
-- Every format over a query's rows and a prepared statement's array
-- (generic plan): the stub echoes each row's argument list.
SELECT 'rs' AS t, payload, response FROM rs WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs ORDER BY id))
UNION ALL
SELECT 'bq', payload, response FROM bq WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs ORDER BY id))
UNION ALL
SELECT 'sf', payload, response FROM sf WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs ORDER BY id))
UNION ALL
SELECT 'lf', payload, response FROM lf WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs ORDER BY id));
PREPARE every_format(jsonb[]) AS
  SELECT 'rs' AS t, payload, response FROM rs WHERE payload = ANY($1)
  UNION ALL SELECT 'bq', payload, response FROM bq WHERE payload = ANY($1)
  UNION ALL SELECT 'sf', payload, response FROM sf WHERE payload = ANY($1)
  UNION ALL SELECT 'lf', payload, response FROM lf WHERE payload = ANY($1);
SET plan_cache_mode = force_generic_plan;
EXECUTE every_format(ARRAY['"p"', '[1, null]', '{"q": [2]}']::jsonb[]);
RESET plan_cache_mode;
DEALLOCATE every_format;
SELECT calls_of('batch-redshift') AS redshift, calls_of('batch-bigquery') AS bigquery,
       calls_of('batch-snowflake') AS snowflake, calls_of('batch-lambda_fdw') AS lambda_fdw;
-- Joined back to its source, the scan still batches (the form the README
-- gives): 4 distinct pairs, 2 more calls.
SELECT p.id, s.response FROM pairs p
  JOIN (SELECT payload, response FROM lf
         WHERE payload = ANY(ARRAY(SELECT jsonb_build_array(a, b) FROM pairs))) s
    ON s.payload = jsonb_build_array(p.a, p.b)
 ORDER BY p.id;
SELECT calls_of('batch-lambda_fdw') AS lambda_fdw;
-- Several values of another request column: one batch per value, rows in
-- the order they would come unbatched (payloads slowest).
CREATE FOREIGN TABLE bq_q (payload jsonb, qualifier text, response jsonb)
  SERVER stub OPTIONS (function_name 'batch-bigquery-2ms', batch_size '2', batch_format 'bigquery');
SELECT payload, qualifier, response FROM bq_q WHERE payload IN ('1', '2', '3') AND qualifier IN ('v1', 'v2');
SELECT calls_of('batch-bigquery-2ms') AS calls;

-- Replies that cannot be trusted: an error naming the function, the
-- format and the counts; with function_errors 'return', rows saying so.
CREATE FOREIGN TABLE faulty (payload jsonb, response jsonb, function_error text)
  SERVER stub OPTIONS (function_name 'batch-redshift-short', batch_size '3', batch_format 'redshift');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2', '3');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-redshift-bad');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-redshift-failed');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-redshift-string');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-bigquery-short', SET batch_format 'bigquery');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-bigquery-bad');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-bigquery-failed');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-snowflake-renumbered', SET batch_format 'snowflake');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-snowflake-short');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-snowflake-bad');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-lambda_fdw-short', SET batch_format 'lambda_fdw');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-lambda_fdw-bad');
SELECT payload, response FROM faulty WHERE payload IN ('1', '2');
-- With function_errors 'return': each batch's rows say what was wrong with
-- its reply (the stub leaves one result out of every batch).
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-redshift-short', SET batch_format 'redshift', ADD function_errors 'return');
SELECT payload, response, function_error FROM faulty WHERE payload IN ('1', '2', '3', '4');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-snowflake-renumbered', SET batch_format 'snowflake');
SELECT payload, response, function_error FROM faulty WHERE payload IN ('1', '2');
ALTER FOREIGN TABLE faulty OPTIONS (SET function_name 'batch-bigquery-failed', SET batch_format 'bigquery');
SELECT payload, response, function_error FROM faulty WHERE payload IN ('1', '2');

-- Limits: a 413 splits the batch in halves until each part fits (the stub
-- refuses requests over 2,048 bytes); the results are every row's.
CREATE FOREIGN TABLE small (payload jsonb, response jsonb)
  SERVER stub OPTIONS (function_name 'batch-lambda_fdw-small', batch_size '100');
SELECT count(*) AS rows, count(*) FILTER (WHERE response = payload) AS echoed
  FROM small WHERE payload = ANY(ARRAY(SELECT to_jsonb(repeat('x', 100) || i) FROM generate_series(1, 40) i));
SELECT calls_of('batch-lambda_fdw-small') AS calls;
-- A batch is cut to stay within Lambda's 6 MB: ten 1 MB rows take two calls.
CREATE FOREIGN TABLE big (payload jsonb, response jsonb)
  SERVER stub OPTIONS (function_name 'batch-lambda_fdw-3ms', batch_size '10');
SELECT count(*) AS rows, sum(length(response #>> '{}')) AS answered_bytes
  FROM big WHERE payload = ANY(ARRAY(SELECT to_jsonb(repeat('y', 1000000) || i) FROM generate_series(1, 10) i));
SELECT calls_of('batch-lambda_fdw-3ms') AS calls;
-- A row too large for any request on its own fails before anything is sent.
SELECT count(*) FROM big WHERE payload IN ('1', to_jsonb(repeat('z', 6291440)));
SELECT calls_of('batch-lambda_fdw-3ms') AS calls;

-- Event: Lambda answers a batch 202 with no results: each row gets the
-- status and no response. Event requests are cut at 1 MB: three 400 kB
-- rows take two calls.
CREATE FOREIGN TABLE ev (payload jsonb, invocation_type text, status_code int, response jsonb)
  SERVER stub OPTIONS (function_name 'batch-lambda_fdw-5ms', batch_size '2', invocation_type 'Event');
SELECT payload, invocation_type, status_code, response FROM ev WHERE payload IN ('1', '2', '3');
SELECT calls_of('batch-lambda_fdw-5ms') AS calls;
ALTER FOREIGN TABLE ev OPTIONS (SET function_name 'batch-lambda_fdw-6ms', SET batch_size '3');
SELECT count(*), min(status_code), max(status_code), count(response) FROM ev
 WHERE payload = ANY(ARRAY(SELECT to_jsonb(repeat('e', 400000) || i) FROM generate_series(1, 3) i));
SELECT calls_of('batch-lambda_fdw-6ms') AS calls;

-- LIMIT stays lazy: 10 rows of 100,000 take the one batch that holds them.
CREATE FOREIGN TABLE lazy (payload jsonb, response jsonb)
  SERVER stub OPTIONS (function_name 'batch-lambda_fdw-4ms', batch_size '500', max_concurrency '10');
SELECT count(*) FROM (SELECT response FROM lazy
  WHERE payload = ANY(ARRAY(SELECT to_jsonb(i) FROM generate_series(1, 100000) i)) LIMIT 10) s;
SELECT calls_of('batch-lambda_fdw-4ms') AS calls;
-- The scan cap counts calls: 100,000 rows in batches of 500 are 200.
SET lambda_fdw.max_scan_invocations = 199;
SELECT count(*) FROM lazy WHERE payload = ANY(ARRAY(SELECT to_jsonb(i) FROM generate_series(1, 100000) i));
RESET lambda_fdw.max_scan_invocations;
SELECT count(*), sum((response)::int) FROM lazy WHERE payload = ANY(ARRAY(SELECT to_jsonb(i) FROM generate_series(1, 100000) i));
SELECT calls_of('batch-lambda_fdw-4ms') AS calls;
-- Statistics count calls and the rows they carried.
SELECT function_name, calls, rows, succeeded FROM lambda_fdw.stat_invocations
 WHERE function_name IN ('batch-lambda_fdw-4ms', 'batch-lambda_fdw-small', 'redshift_add')
   AND database = current_database() ORDER BY function_name;

DROP SERVER ms, stub CASCADE;
DROP TABLE pairs;
DROP FUNCTION calls_of(text), lambda_lines(text);
DROP SCHEMA "Odd Schema", imported;
