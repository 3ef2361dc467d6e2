-- lambda_fdw 0.2.0 -> 0.3.0: the trust boundary. Every name is qualified, so
-- nothing here resolves through a schema a role other than the extension's
-- owner could have written to.
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.3.0'" to load this file. \quit

-- Queueing is a way to invoke: only roles granted it may queue, as only
-- those granted aws_lambda.invoke may call it (sql/queue.sql).
REVOKE ALL ON FUNCTION lambda_fdw.enqueue(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text,
  pg_catalog.text, pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;

-- Which path queued a row, so that the worker signs it as that path does
-- (sql/queue.sql).
ALTER TABLE lambda_fdw.invocations ADD COLUMN foreign_table pg_catalog.oid;
