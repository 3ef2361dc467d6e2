-- IMPORT FOREIGN SCHEMA: a foreign table per function of the server's
-- region, from ministack (the fixture functions) and from the wire stub
-- (123 functions over three ListFunctions pages, names that need quoting,
-- and the error cases).
\set VERBOSITY default
CREATE SERVER imp_ms FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660');
CREATE USER MAPPING FOR CURRENT_USER SERVER imp_ms
  OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test');

-- Every deployed function, with the whole column set.
CREATE SCHEMA fns;
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO fns;
SELECT c.relname, s.srvname, ft.ftoptions
  FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
  JOIN pg_foreign_server s ON s.oid = ft.ftserver
 WHERE c.relnamespace = 'fns'::regnamespace ORDER BY c.relname;
SELECT attnum, attname, format_type(atttypid, atttypmod), attnotnull
  FROM pg_attribute WHERE attrelid = 'fns.echo'::regclass AND attnum > 0 ORDER BY attnum;
-- Each is queryable at once.
SELECT status_code, response, executed_version FROM fns.echo WHERE payload = '{"imported": true}';
SELECT payload, status_code FROM fns.versioned WHERE payload = '{}' AND qualifier = 'prod';
-- Importing again into the same schema: the tables exist (as postgres_fdw).
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO fns;
-- ... after a DROP it works again.
DROP FOREIGN TABLE fns.hello;
IMPORT FOREIGN SCHEMA lambda LIMIT TO (hello) FROM SERVER imp_ms INTO fns;
SELECT count(*) FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'fns'::regnamespace;

-- LIMIT TO and EXCEPT, by function name; names that match nothing are ignored.
CREATE SCHEMA some_fns;
IMPORT FOREIGN SCHEMA lambda LIMIT TO (echo, hello, "no-such-function") FROM SERVER imp_ms INTO some_fns;
SELECT relname FROM pg_class WHERE relnamespace = 'some_fns'::regnamespace ORDER BY 1;
CREATE SCHEMA other_fns;
IMPORT FOREIGN SCHEMA lambda EXCEPT (echo, slow, throttled) FROM SERVER imp_ms INTO other_fns;
SELECT relname FROM pg_class WHERE relnamespace = 'other_fns'::regnamespace ORDER BY 1;

-- Options: set on every table, and a prefix for the names.
CREATE SCHEMA opt_fns;
IMPORT FOREIGN SCHEMA lambda LIMIT TO (l_echo, l_versioned) FROM SERVER imp_ms INTO opt_fns
  OPTIONS (prefix 'l_', qualifier 'prod', function_errors 'return', max_concurrency '4');
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'opt_fns'::regnamespace ORDER BY 1;
SELECT response FROM opt_fns.l_versioned WHERE payload = '{}';
-- With a prefix, LIMIT TO names the tables (PostgreSQL filters by table name).
IMPORT FOREIGN SCHEMA lambda LIMIT TO (echo) FROM SERVER imp_ms INTO opt_fns OPTIONS (prefix 'l_');
\echo :LAST_ERROR_SQLSTATE
-- EXCEPT takes either.
IMPORT FOREIGN SCHEMA lambda EXCEPT (echo, l_fail, hello, l_logger, record, slow, throttled, versioned)
  FROM SERVER imp_ms INTO opt_fns OPTIONS (prefix 'l_');
SELECT relname FROM pg_class WHERE relnamespace = 'opt_fns'::regnamespace ORDER BY 1;

-- Bad options and remote schemas: refused before anything is listed.
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO opt_fns OPTIONS (prefx 'x_');
\echo :LAST_ERROR_SQLSTATE
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO opt_fns OPTIONS (function_name 'echo');
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO opt_fns OPTIONS (function_errors 'ignore');
\echo :LAST_ERROR_SQLSTATE
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO opt_fns OPTIONS (max_concurrency '0');
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_ms INTO opt_fns OPTIONS (qualifier 'no way');
IMPORT FOREIGN SCHEMA public FROM SERVER imp_ms INTO opt_fns;
\echo :LAST_ERROR_SQLSTATE

-- The stub: every page is read, names are quoted as SQL needs.
CREATE SERVER imp_stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'ap-south-2', endpoint_url 'http://127.0.0.1:45661', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER imp_stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE SCHEMA stub_fns;
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_stub INTO stub_fns;
SELECT count(*) AS tables,
       count(*) FILTER (WHERE relname LIKE 'fn-%') AS numbered,
       min(relname) FILTER (WHERE relname LIKE 'fn-%') AS first,
       max(relname) FILTER (WHERE relname LIKE 'fn-%') AS last
  FROM pg_class WHERE relnamespace = 'stub_fns'::regnamespace;
SELECT relname, 'stub_fns'::regnamespace::text || '.' || quote_ident(relname) AS written
  FROM pg_class WHERE relnamespace = 'stub_fns'::regnamespace AND relname NOT LIKE 'fn-%' ORDER BY 1;
SELECT status_code, response FROM stub_fns."Resize-Image" WHERE payload = '{"k": 1}';
SELECT status_code, response FROM stub_fns."select" WHERE payload = '{"s": 2}';
CREATE FOREIGN TABLE imp_calls (payload jsonb, response jsonb) SERVER imp_stub OPTIONS (function_name 'calls');
SELECT response->'calls' AS list_pages FROM imp_calls WHERE payload = '{"of": "list-functions", "key": "pages"}';

-- Errors are the invocation's, and nothing is half-made.
CREATE SCHEMA failed_fns;
ALTER USER MAPPING FOR CURRENT_USER SERVER imp_stub
  OPTIONS (SET aws_access_key_id 'AKIDDENIED');
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_stub INTO failed_fns;
\echo :LAST_ERROR_SQLSTATE
ALTER USER MAPPING FOR CURRENT_USER SERVER imp_stub
  OPTIONS (SET aws_access_key_id 'AKIDTEST');
CREATE SERVER imp_nowhere FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'ap-south-2', endpoint_url 'http://127.0.0.1:1', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER imp_nowhere
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_nowhere INTO failed_fns;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_class WHERE relnamespace = 'failed_fns'::regnamespace;
-- Without USAGE on the server, or without credentials for it.
CREATE ROLE imp_nobody;
GRANT CREATE ON SCHEMA failed_fns TO imp_nobody;
SET ROLE imp_nobody;
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_stub INTO failed_fns;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER imp_stub TO imp_nobody;
SET ROLE imp_nobody;
IMPORT FOREIGN SCHEMA lambda FROM SERVER imp_stub INTO failed_fns;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) FROM pg_class WHERE relnamespace = 'failed_fns'::regnamespace;

SET client_min_messages = warning;
DROP OWNED BY imp_nobody;
DROP ROLE imp_nobody;
DROP SCHEMA fns, some_fns, other_fns, opt_fns, stub_fns, failed_fns CASCADE;
DROP SERVER imp_ms, imp_stub, imp_nowhere CASCADE;
