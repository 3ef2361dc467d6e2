-- The RDS for PostgreSQL user guide's steps for letting another role invoke
-- Lambda functions (its "Step 6: Grant other users permission to invoke
-- Lambda functions"), run as written, against ministack.
--
-- On RDS the DB instance's IAM role signs every call. Here a superuser sets
-- up the region's route: a lambda_fdw server for the region, and a user
-- mapping for PUBLIC standing in for the instance role (the test cluster's
-- server process has no AWS identity of its own). The guide's role gets no
-- grant on that server: the guide's two grants are all it needs.
\set VERBOSITY default
CREATE SERVER lambda_us_east_1 FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1');
CREATE USER MAPPING FOR PUBLIC SERVER lambda_us_east_1
  OPTIONS (aws_access_key_id 'AKIDGUIDE', aws_secret_access_key 'guide-secret-key');

-- The guide's user.
CREATE ROLE db_username;

-- Before the grants, only the admin can invoke.
SET ROLE db_username;
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('hello', 'us-east-1'), '{"body": "Hello from Postgres!"}'::json);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The guide's first grant: the schema, not yet its functions.
GRANT USAGE ON SCHEMA aws_lambda TO db_username;
SET ROLE db_username;
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('hello', 'us-east-1'), '{"body": "Hello from Postgres!"}'::json);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The guide's second grant.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO db_username;

-- Now the role invokes exactly as on RDS: through the region's route, with
-- no privilege on its server.
SET ROLE db_username;
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('hello', 'us-east-1'), '{"body": "Hello from Postgres!"}'::json);
SELECT * FROM aws_lambda.invoke('hello', '{"body": "Hello from Postgres!"}'::json, 'us-east-1');
SELECT status_code, payload FROM aws_lambda.invoke('arn:aws:lambda:us-east-1:000000000000:function:echo', '{"from": "db_username"}'::jsonb);
SELECT status_code, payload FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('hello', 'us-east-1'), '{}'::json, 'Event');
SELECT has_server_privilege('lambda_us_east_1', 'USAGE') AS usage_on_the_route;
RESET ROLE;

-- A pattern of projects built on RDS: a trigger function that invokes
-- Lambda, SECURITY DEFINER and owned by a NOLOGIN role granted exactly the
-- guide's two things, so that the roles writing the table need no grant of
-- their own on aws_lambda.
CREATE ROLE lambda_invoker NOLOGIN;
GRANT USAGE ON SCHEMA aws_lambda TO lambda_invoker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO lambda_invoker;
CREATE TABLE guide_orders (id int PRIMARY KEY, body text, lambda_status int, lambda_payload jsonb);
CREATE FUNCTION guide_orders_invoke() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('echo', 'us-east-1'),
                                         jsonb_build_object('id', NEW.id, 'body', NEW.body));
  NEW.lambda_status := r.status_code;
  NEW.lambda_payload := r.payload;
  RETURN NEW;
END $$;
ALTER FUNCTION guide_orders_invoke() OWNER TO lambda_invoker;
CREATE TRIGGER guide_orders_invoke BEFORE INSERT ON guide_orders
  FOR EACH ROW EXECUTE FUNCTION guide_orders_invoke();
CREATE ROLE guide_writer;
GRANT SELECT, INSERT ON guide_orders TO guide_writer;
SET ROLE guide_writer;
INSERT INTO guide_orders (id, body) VALUES (1, 'first order') RETURNING *;
-- The writer itself still cannot invoke.
SELECT * FROM aws_lambda.invoke('echo', '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Taking the grants back closes the door again.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda FROM db_username;
SET ROLE db_username;
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Leave nothing behind for the next suites.
DROP TABLE guide_orders;
DROP FUNCTION guide_orders_invoke();
REVOKE ALL ON SCHEMA aws_lambda FROM db_username, lambda_invoker;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA aws_lambda FROM lambda_invoker;
DROP ROLE db_username, lambda_invoker, guide_writer;
SET client_min_messages = warning;
DROP SERVER lambda_us_east_1 CASCADE;
RESET client_min_messages;
