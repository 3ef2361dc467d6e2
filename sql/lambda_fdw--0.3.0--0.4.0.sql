-- lambda_fdw 0.3.0 -> 0.4.0: no change to the extension's objects. 0.4.0
-- adds the Amazon RDS extension names aws_commons and aws_lambda (their own
-- control files, owning no objects: docs/rds.md, "The extension names") and
-- release packages; this script only moves the version.
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.4.0'" to load this file. \quit
