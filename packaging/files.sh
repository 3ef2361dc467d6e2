# Sourced by packaging/build (which makes the packages) and
# tests/harness/packages.sh (which checks them): what a package of this tree
# is, decided once.

# lambda_fdw_version ROOT: [workspace.package] version of ROOT/Cargo.toml.
lambda_fdw_version() {
  awk '
    /^\[/ { section = $0; next }
    section == "[workspace.package]" && /^version[[:space:]]*=/ {
      sub(/^version[[:space:]]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
    }' "$1/Cargo.toml"
}

# package_ext_files ROOT VERSION: the files of share/extension, by name: the
# control file, this version's install script (pgrx generates it), every
# update script in sql/, and the RDS names (rds_names/, its README.md
# aside). The old versions' install scripts (sql/lambda_fdw--<v>.sql) are
# the upgrade test's, never a package's.
package_ext_files() {
  local f
  echo lambda_fdw.control
  echo "lambda_fdw--$2.sql"
  for f in "$1"/sql/lambda_fdw--*--*.sql; do basename "$f"; done
  echo aws_commons.control
  for f in "$1"/rds_names/aws_commons--*.sql; do basename "$f"; done
  echo aws_lambda.control
  for f in "$1"/rds_names/aws_lambda--*.sql; do basename "$f"; done
}
