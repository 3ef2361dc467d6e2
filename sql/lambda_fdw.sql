-- The foreign data wrapper. Its handler and validator functions are created
-- by the Rust code (lambda_fdw_handler, lambda_fdw_validator).
CREATE FOREIGN DATA WRAPPER lambda_fdw
  HANDLER lambda_fdw_handler
  VALIDATOR lambda_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER lambda_fdw IS 'Invoke AWS Lambda functions: one foreign table per function';

-- Column checks when a lambda_fdw foreign table is created or altered (the
-- wrapper's validator sees options, not columns).
-- SECURITY DEFINER: whoever creates the table, the check runs as the
-- extension's owner, and the checker itself is not callable by others (its
-- errors name columns).
CREATE FUNCTION lambda_fdw_check_new_columns() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t oid;
BEGIN
  FOR t IN
    SELECT DISTINCT c.objid
      FROM pg_event_trigger_ddl_commands() c
      JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.objid
      JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
      JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
     WHERE c.classid = 'pg_catalog.pg_class'::regclass AND w.fdwname = 'lambda_fdw'
  LOOP
    PERFORM @extschema@.lambda_fdw_check_columns(t);
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION lambda_fdw_check_columns(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION lambda_fdw_check_new_columns() FROM PUBLIC;
CREATE EVENT TRIGGER lambda_fdw_check_columns ON ddl_command_end
  WHEN TAG IN ('CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'IMPORT FOREIGN SCHEMA')
  EXECUTE FUNCTION lambda_fdw_check_new_columns();
